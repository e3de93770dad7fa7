"""MLflow's basic-auth app: its settings, and the `pipeline` (EDIT) and `reader` (READ) users.

Auth is on always, on loopback too: a lab's shared server has many local users. The users live
in PostgreSQL (database `mlflow_auth`); their passwords only in the 0600 credentials file, and
they reach the server through its environment or a request body, never argv or a log.
Every authenticated user may READ (`default_permission`); the pipeline gets EDIT on every
experiment and registered model. A stack whose server lets an anonymous request through, or
where a user cannot be set up, is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.core.errors import ServiceError
from cnnlab.core.io import write_text

ADMIN = "admin"
USERS = {"pipeline": "EDIT", "reader": "READ"}  # user -> permission on every experiment and model
RESOURCES = ("experiment", "registered_model")


def password(keys: dict[str, str], user: str) -> str:
    return keys[f"MLFLOW_{user.upper()}_PASSWORD"]


def server_env(state: Path, database_uri: str, keys: dict[str, str]) -> dict[str, str]:
    """What `mlflow server --app-name basic-auth` reads: its ini file (0600, it holds the
    database URI) and, through the environment, the admin's first password and the CSRF key."""
    ini = state / "mlflow" / "basic_auth.ini"
    write_text(ini, "[mlflow]\ndefault_permission = READ\n"
                    f"database_uri = {database_uri}\nadmin_username = {ADMIN}\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                    "auth_cache_ttl_seconds = 60\n", mode=0o600)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": password(keys, ADMIN),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": keys["MLFLOW_FLASK_SERVER_SECRET_KEY"]}


def _call(method: str, url: str, what: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
    """One request; an answer outside `ok` other than "already exists" is a ServiceError."""
    import requests

    try:  # `verify` per request: a session's is overridden by REQUESTS_CA_BUNDLE
        answer = requests.request(method, url, timeout=10, **kwargs)
    except requests.RequestException as exc:
        raise ServiceError(f"MLflow auth could not be set up: {what} ({type(exc).__name__})"
                           ) from None
    if answer.status_code not in ok and "RESOURCE_ALREADY_EXISTS" not in answer.text:
        raise ServiceError(f"MLflow auth could not be set up: {what} (HTTP {answer.status_code}"
                           f" {answer.text[:200]!r})")
    return answer


def ensure_users(url: str, keys: dict[str, str], verify: str | bool) -> None:
    """Create the users a first start lacks, grant their permissions, and check that the
    server refuses anonymous requests (ServiceError otherwise: the stack must not run open)."""
    _call("GET", f"{url}/api/2.0/mlflow/experiments/search?max_results=1",
          "the server let an anonymous request through", ok=(401,), verify=verify)
    admin = {"verify": verify, "auth": (ADMIN, password(keys, ADMIN))}
    for user, permission in USERS.items():
        found = _call("GET", f"{url}/api/2.0/mlflow/users/get", f"looking up `{user}`",
                      ok=(200, 404), params={"username": user}, **admin)
        if found.status_code == 404:
            _call("POST", f"{url}/api/2.0/mlflow/users/create", f"creating `{user}`",
                  json={"username": user, "password": password(keys, user)}, **admin)
        for resource in RESOURCES:
            _call("POST", f"{url}/api/3.0/mlflow/users/permissions/grant",
                  f"granting {permission} on every {resource} to `{user}`",
                  json={"username": user, "resource_type": resource, "resource_id": "*",
                        "permission": permission}, **admin)
