"""Train a stage: ``python -m ltx.cli.train --config-name train_vae [overrides]`` (``make train-vae``).

The stage (``stage: vae`` / ``stage: dit``) names a LightningModule in the "training stage" registry;
it receives the whole config and builds its own modules, so checkpoints rebuild themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig

from ltx.registry import TRAINING_STAGES
from ltx.training.checkpoints import checkpoint_step, resolve_resume

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def build_training(cfg: DictConfig, resumed_step: int | None = None
                   ) -> tuple[L.LightningModule, L.LightningDataModule, L.Trainer]:
    """Module, data module and trainer from a composed config (no training yet)."""
    datamodule = instantiate(cfg.data)
    module = TRAINING_STAGES.build(cfg.stage, cfg=cfg)
    plugins = []
    if SLURMEnvironment.detect():  # requeueing is PreemptionCheckpoint's job (see ltx.training.checkpoints)
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = instantiate(cfg.trainer, logger=build_loggers(cfg, resumed_step) or False,
                          callbacks=build_callbacks(cfg), plugins=plugins or None)
    return module, datamodule, trainer


def build_loggers(cfg: DictConfig, resumed_step: int | None = None) -> list[Any]:
    """Every logger of the ``logger`` group (a mapping of name to logger config). A resumed run writes its
    CSV metrics to ``csv/resumed-step<N>/`` (Lightning's CSV writer would delete the earlier rows)."""
    loggers = []
    for logger in (cfg.get("logger") or {}).values():
        if not logger:
            continue
        overrides = {}
        if resumed_step is not None and logger.get("_target_", "").endswith("CSVLogger"):
            overrides["version"] = f"resumed-step{resumed_step}"
        loggers.append(instantiate(logger, **overrides))
    return loggers


def build_callbacks(cfg: DictConfig) -> list[Any]:
    """Every callback under ``callbacks`` (null entries, e.g. ``callbacks.ema=null``, are left out)."""
    return [instantiate(callback) for callback in (cfg.get("callbacks") or {}).values() if callback]


def run_training(cfg: DictConfig) -> L.Trainer:
    """Train; ``resume``: null, ``auto`` (the latest complete checkpoint of ``run_dir``) or a path."""
    L.seed_everything(cfg.seed, workers=True)
    checkpoint = resolve_resume(cfg.get("resume"), cfg.run_dir)
    module, datamodule, trainer = build_training(cfg, checkpoint_step(checkpoint) if checkpoint else None)
    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
    return trainer


@hydra.main(config_path=str(CONFIG_DIR), config_name="train_vae", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.RUN:
        # Processes that Lightning launches for the other local ranks get the first one's hydra.run.dir;
        # taking run_dir from it keeps every rank in one run directory whatever ${now:} gives them.
        cfg.run_dir = hydra_cfg.run.dir
    trainer = run_training(cfg)
    if trainer.is_global_zero:
        print(final_metrics_line(trainer, cfg.run_dir))


def final_metrics_line(trainer: L.Trainer, run_dir: str) -> str:
    """One line for the end of a run: the step reached and the last validation metrics (``val/*``)."""
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()
               if name.startswith("val/") and getattr(value, "numel", lambda: 1)() == 1}
    shown = ", ".join(f"{name} {value:.4g}" for name, value in sorted(metrics.items())) or "no validation ran"
    return f"trained to step {trainer.global_step} in {run_dir}: {shown}"


if __name__ == "__main__":
    main()
