"""A settings file of conf/ (services.yaml, cluster.yaml) with `key=value` overrides, as the
`python -m cnnlab services|cluster` commands and `make` take them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnnlab.core.errors import ServiceError
from cnnlab.core.paths import project_root


def load_settings(name: str, overrides: Sequence[str] = (), root: Path | None = None
                  ) -> DictConfig:
    """conf/<name>.yaml with `key=value` overrides (an unknown key is a one-line error);
    `state_dir` made absolute under the root."""
    root = root or project_root()
    cfg = OmegaConf.load(root / "conf" / f"{name}.yaml")
    OmegaConf.set_struct(cfg, True)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        reason = str(exc.msg).splitlines()[0]
        raise ServiceError(f"{name} override {' '.join(overrides)}: {reason} "
                           f"(keys: conf/{name}.yaml)") from None
    cfg.state_dir = str((root / cfg.state_dir).resolve())
    return cfg
