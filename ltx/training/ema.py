"""Exponential moving average of a module's weights (torch.optim.swa_utils), used for validation
and export, saved in checkpoints."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.optim.swa_utils import AveragedModel


def warmup_ema_decay(decay: float, num_averaged: int) -> float:
    """``min(decay, (1 + n) / (10 + n))``: early averages follow the weights closely, so a short run's
    EMA is not stuck near the initialisation (the usual EMA warm-up)."""
    return min(decay, (1 + num_averaged) / (10 + num_averaged))


class WarmupEMA:
    """``multi_avg_fn`` for ``AveragedModel``: an exponential moving average with warm-up."""

    def __init__(self, decay: float):
        self.decay = decay

    def __call__(self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        weight = 1.0 - warmup_ema_decay(self.decay, int(num_averaged))
        torch._foreach_lerp_(averaged, current, weight)


class EMACallback(L.Callback):
    """Keeps ``AveragedModel(getattr(module, attribute))`` with ``decay`` (warmed up, see
    ``warmup_ema_decay``), updated after every training
    batch from ``start_step`` on. During validation the module runs with the averaged weights; at the
    end of fit, if the module has ``export_weights(model, path)``, the averaged model is exported to
    ``export_dir``."""

    def __init__(self, attribute: str, decay: float = 0.999, start_step: int = 0, export_dir: str | None = None):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.attribute, self.decay, self.start_step, self.export_dir = attribute, decay, start_step, export_dir
        self.ema: AveragedModel | None = None
        self._pending_state: dict[str, Any] | None = None
        self._training_weights: dict[str, torch.Tensor] | None = None

    def target(self, pl_module: L.LightningModule) -> torch.nn.Module:
        if not hasattr(pl_module, self.attribute):
            raise AttributeError(f"EMA target {self.attribute!r} is not an attribute of {type(pl_module).__name__}")
        return getattr(pl_module, self.attribute)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ema = AveragedModel(self.target(pl_module), multi_avg_fn=WarmupEMA(self.decay), use_buffers=True)
        if self._pending_state is not None:
            self.ema.load_state_dict(self._pending_state)
            self._pending_state = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step >= self.start_step:
            self.ema.update_parameters(self.target(pl_module))

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.ema is None or trainer.sanity_checking:
            return
        target = self.target(pl_module)
        self._training_weights = copy.deepcopy(target.state_dict())
        target.load_state_dict(self.ema.module.state_dict())

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._training_weights is not None:
            self.target(pl_module).load_state_dict(self._training_weights)
            self._training_weights = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.export_dir and self.ema is not None and hasattr(pl_module, "export_weights") and trainer.is_global_zero:
            pl_module.export_weights(self.ema.module, Path(self.export_dir))

    def state_dict(self) -> dict[str, Any]:
        return {} if self.ema is None else {"ema": self.ema.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "ema" in state_dict:
            if self.ema is not None:
                self.ema.load_state_dict(state_dict["ema"])
            else:
                self._pending_state = state_dict["ema"]
