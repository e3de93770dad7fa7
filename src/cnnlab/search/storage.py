"""Where a study lives: an Optuna RDB beside the tracking store, opened in one place."""

from __future__ import annotations

import warnings
from importlib.metadata import version
from pathlib import Path

from cnnlab.core.errors import ConfigError
from cnnlab.core.paths import state_dir, tracking_uri

STUDY_FILE = "optuna.db"
# hydra-optuna-sweeper 1.3.0 builds Optuna 2's distribution classes, which Optuna 3+ still takes
warnings.filterwarnings("ignore", r".*Distribution has been deprecated in v3\.0\.0", FutureWarning)


def default_storage() -> str:
    """`sqlite:///<dir>/optuna.db` beside a SQLite `mlflow.db`; with a tracking server, in the
    state dir (`.cnnlab/`). A PostgreSQL URI in `hydra.sweeper.storage` uses the server's engine.
    """
    uri = tracking_uri()
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") \
        else state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.resolve() / STUDY_FILE}"


def shown(storage: str) -> str:
    """`storage` as it may be printed and logged: without its password."""
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


def check_optuna() -> None:
    """Optuna before 3.1 cannot keep a study in an RDB under SQLAlchemy 2 (its schema stamp
    is never committed): say so in one line instead of Optuna's bare AssertionError."""
    optuna, sqlalchemy = version("optuna"), version("sqlalchemy")
    if tuple(map(int, optuna.split(".")[:2])) < (3, 1) and int(sqlalchemy.split(".")[0]) >= 2:
        raise ConfigError(f"optuna {optuna}: cannot use an RDB storage with SQLAlchemy "
                          f"{sqlalchemy} (Optuna 3.1 or newer can); install the pinned optuna")


def load_study(name: str, storage: str | None = None):  # -> optuna.Study
    """The study `name` in `storage` (default: `default_storage()`); ConfigError if absent."""
    import optuna

    check_optuna()
    storage = storage or default_storage()
    known = optuna.get_all_study_names(storage)
    if name not in known:
        raise ConfigError(f"study {name!r}: not in {shown(storage)} (studies there: {sorted(known)})")
    return optuna.load_study(study_name=name, storage=storage)
