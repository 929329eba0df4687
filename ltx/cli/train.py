"""Train a stage: ``python -m ltx.cli.train --config-name train_vae [overrides]`` (``make train-vae``).

The stage (``stage: vae`` / ``stage: dit``) names a LightningModule in the "training stage" registry;
it receives the whole config and builds its own modules, so checkpoints rebuild themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from ltx.registry import TRAINING_STAGES

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def build_training(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule, L.Trainer]:
    """Module, data module and trainer from a composed config (no training yet)."""
    datamodule = instantiate(cfg.data)
    module = TRAINING_STAGES.build(cfg.stage, cfg=cfg)
    trainer = instantiate(cfg.trainer, logger=build_loggers(cfg) or False, callbacks=build_callbacks(cfg))
    return module, datamodule, trainer


def build_loggers(cfg: DictConfig) -> list[Any]:
    """Every logger of the ``logger`` group (a mapping of name to logger config)."""
    return [instantiate(logger) for logger in (cfg.get("logger") or {}).values() if logger]


def build_callbacks(cfg: DictConfig) -> list[Any]:
    """Every callback under ``callbacks`` (null entries, e.g. ``callbacks.ema=null``, are left out)."""
    return [instantiate(callback) for callback in (cfg.get("callbacks") or {}).values() if callback]


def run_training(cfg: DictConfig) -> L.Trainer:
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule, trainer = build_training(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("resume"))
    return trainer


@hydra.main(config_path=str(CONFIG_DIR), config_name="train_vae", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_training(cfg)


if __name__ == "__main__":
    main()
