"""What every stage entry point shares: Hydra config, clean errors, no stray output dirs.

A stage is `@stage def main(cfg)`. DVC runs it on the composed `params.yaml`
(`--config-dir . --config-name params`); by hand or in a multirun it composes `conf/`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from cnnlab.core.errors import CnnlabError  # noqa: E402

CONF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conf")


def plain(cfg: Any) -> Any:
    """A resolved DictConfig as plain dicts and lists, which is what the library takes."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def stage(fn: Callable[[DictConfig], Any]) -> Callable[[], None]:
    """Wrap `fn(cfg)` as a Hydra app that reports CnnlabError in one line and exits 2."""

    @functools.wraps(fn)
    def task(cfg: DictConfig) -> Any:
        try:
            return fn(cfg)
        except CnnlabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    def main() -> None:
        if "-m" not in sys.argv and "--multirun" not in sys.argv:
            # single runs write nothing of Hydra's own (no outputs/<date> directories)
            sys.argv += ["hydra.output_subdir=null", "hydra.run.dir=.",
                         "hydra/job_logging=none", "hydra/hydra_logging=none"]
        hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(task)()

    return main
