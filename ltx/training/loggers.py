"""Experiment trackers beyond Lightning's defaults: Weights & Biases that stays offline unless credentials
are configured, so tests, the demo and clusters without network never reach out by accident."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

WANDB_HOST = "api.wandb.ai"


def wandb_credentials_configured() -> bool:
    """Whether W&B could log in: ``WANDB_API_KEY`` is set, or a netrc file (``NETRC`` or ``~/.netrc``, where
    ``wandb login`` writes) has an entry for api.wandb.ai."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc")).expanduser()
    try:
        return path.is_file() and netrc.netrc(str(path)).authenticators(WANDB_HOST) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def wandb_logger(project: str, name: str | None, save_dir: str, offline: bool | None = None, **kwargs: Any):
    """Lightning's ``WandbLogger``; ``offline=None`` means offline unless ``wandb_credentials_configured()``
    (offline runs are written under ``save_dir/wandb`` and uploaded later with ``wandb sync``)."""
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = not wandb_credentials_configured()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, name=name, save_dir=save_dir, offline=offline, **kwargs)


__all__ = ["wandb_credentials_configured", "wandb_logger"]
