"""MLflow, resolved in one place: where runs go, how they are grouped, what they carry.

Every call a stage makes to MLflow goes through this package. The package itself is cheap:
its modules import MLflow, so a process pays for MLflow only once it imports one to log. Any
MLflow user imports the package first, as it sets MLflow's environment below.

- `store`: pointing MLflow at the store and writing to it beside other processes: schema,
  experiment and a sweep's parent run are created under a file lock, and writes that meet a
  busy SQLite database are retried, so parallel jobs on a fresh store lose nothing. A server
  that is down when a stage starts fails the stage within seconds, in one line;
- `runs`: one run around a stage (rank zero only in a multi-process run; a sweep's runs under
  one parent; orphans, the RUNNING runs of the same stage whose process died, marked KILLED)
  and the `log_*` calls that fill it;
- `outbox`: a store that goes down during a stage never costs the stage: what cannot be sent
  is kept on disk (`<project root>/.cnnlab/outbox/`), and
  `python -m cnnlab.core.tracking replay` sends it once the server is back.

Where the store is (`sqlite:///<project root>/mlflow.db`, or `MLFLOW_TRACKING_URI`) is
`cnnlab.core.paths.tracking_uri`, which needs no MLflow.
"""

from __future__ import annotations

import logging
import os

# set before any module of the package imports MLflow
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# a dead server should cost seconds, not MLflow's default of minutes of retries per call
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
# artifacts go through the tracking server, the one address (and CA, and user) a client has:
# not straight to the server's object store by presigned URLs, as MLflow 3.17 would for S3
os.environ.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
os.environ.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")

for _chatty in ("mlflow", "alembic"):  # schema creation and registry notes: not for the console
    logging.getLogger(_chatty).setLevel(logging.WARNING)
# a system metrics sampler that meets a store down stops, as meant (runs.py); the outbox
# already says in one line that the store is down
logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
