"""Exponential moving average of a trained module's weights, used for validation and export.

The averaged copy is a submodule of the LightningModule (``pl_module.ema``, state-dict keys
``ema.module.*`` and ``ema.num_updates``), so it is saved and restored with the model, sharded the same
way under FSDP2 (every rank averages its own shards) and written into distributed checkpoints.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.distributed.tensor import DTensor

from ltx.training.parallelize import full_state_dict, local_tensors, state_dict_name

EMA_ATTRIBUTE = "ema"
EMA_PREFIX = f"{EMA_ATTRIBUTE}.module."
EMA_AVERAGES_PREFIX = f"{EMA_ATTRIBUTE}.averages."  # EMA of the trainable parameters only (LoRA)


def ema_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The EMA weights from a stage's state dict, with the averaged module's own names (e.g. the VAE's);
    None when the checkpoint has no EMA."""
    state = {k.removeprefix(EMA_PREFIX): v for k, v in state_dict.items() if k.startswith(EMA_PREFIX)}
    return state or None


def ema_trainable_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The averaged trainable parameters (an EMA with ``trainable_only``, e.g. of LoRA adapters) from a stage's
    state dict, under the parameter names of the averaged module; None when there are none."""
    state = {k.removeprefix(EMA_AVERAGES_PREFIX).replace("__", "."): v for k, v in state_dict.items()
             if k.startswith(EMA_AVERAGES_PREFIX)}
    return state or None


def warmup_ema_decay(decay: float, num_averaged: int) -> float:
    """``min(decay, (1 + n) / (10 + n))``: early averages follow the weights closely, so a short run's
    EMA is not stuck near the initialisation (the usual EMA warm-up)."""
    return min(decay, (1 + num_averaged) / (10 + num_averaged))


class EMAWeights(nn.Module):
    """A frozen copy of ``source`` whose floating-point parameters and buffers follow the source's:
    ``ema = lerp(ema, current, 1 - warmup_ema_decay(decay, n))``. The first update copies the weights.

    With ``trainable_only`` (LoRA fine-tuning: a frozen base) only the parameters that require gradients are
    averaged, as buffers of ``averages`` named after them (``.`` written ``__``); ``module`` is None.
    """

    def __init__(self, source: nn.Module, decay: float, trainable_only: bool = False):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.trainable_only = decay, trainable_only
        self.module = None if trainable_only else copy.deepcopy(source).requires_grad_(False).eval()
        self.averages = nn.Module()
        if trainable_only:
            self.track(source)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def track(self, source: nn.Module) -> None:
        """(``trainable_only``) Copy ``source``'s trainable parameters as the averages: again after the source
        is sharded, so the averages are sharded like it."""
        for name, parameter in source.named_parameters():
            if parameter.requires_grad:
                self.averages.register_buffer(state_dict_name(name).replace(".", "__"), parameter.detach().clone())
        if not list(self.averages.buffers()):
            raise ValueError("EMA of the trainable parameters only, but nothing in the model requires gradients")

    def averaged_state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, gathered on CPU when sharded (a collective): the model's state dict, or with
        ``trainable_only`` the trainable parameters under their names in the model."""
        if self.module is not None:
            return full_state_dict(self.module)
        return {name.replace("__", "."): (tensor.full_tensor() if isinstance(tensor, DTensor) else tensor).detach().cpu()
                for name, tensor in self.averages.named_buffers()}  # full_tensor: a collective, in the same order

    def train(self, mode: bool = True) -> EMAWeights:
        return self  # never trained: the copy stays in eval mode

    def _floating(self, module: nn.Module, averaged: bool) -> list[torch.Tensor]:
        if self.trainable_only:
            tensors = list(module.buffers()) if averaged else [p for p in module.parameters() if p.requires_grad]
            return local_tensors(tensors)
        tensors = [*module.parameters(), *module.buffers()]
        return local_tensors(t for t in tensors if t.is_floating_point())

    def _pairs(self, source: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        averaged_module = self.averages if self.trainable_only else self.module
        return self._floating(averaged_module, averaged=True), self._floating(source, averaged=False)

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        averaged, current = self._pairs(source)
        if len(averaged) != len(current):
            raise RuntimeError(f"EMA copy has {len(averaged)} tensors but the source {len(current)}: was the source "
                               f"rebuilt or parallelized differently after the copy?")
        count = int(self.num_updates)
        weight = 1.0 if count == 0 else 1.0 - warmup_ema_decay(self.decay, count)
        torch._foreach_lerp_(averaged, [c.to(a.dtype) for a, c in zip(averaged, current)], weight)
        self.num_updates += 1

    @torch.no_grad()
    def swap(self, source: nn.Module) -> None:
        """Exchange the averaged weights with ``source``'s (validation runs on the EMA weights)."""
        for averaged, current in zip(*self._pairs(source)):
            kept = current.clone()
            current.copy_(averaged)
            averaged.copy_(kept)


class EMACallback(L.Callback):
    """Keeps ``pl_module.ema = EMAWeights(getattr(pl_module, attribute), decay)``, updated after every
    training batch from ``start_step`` on. The copy is made in ``setup`` (before ``configure_model``,
    so stages shard it like the original). During validation the module runs with the averaged weights;
    at the end of fit, if the module has ``export_weights(state_dict, path)``, the averaged weights are
    exported to ``export_dir`` (gathered from all ranks when sharded)."""

    def __init__(self, attribute: str, decay: float = 0.999, start_step: int = 0, export_dir: str | None = None):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.attribute, self.decay, self.start_step, self.export_dir = attribute, decay, start_step, export_dir
        self._swapped = False

    def target(self, pl_module: L.LightningModule) -> nn.Module:
        if not hasattr(pl_module, self.attribute):
            raise AttributeError(f"EMA target {self.attribute!r} is not an attribute of {type(pl_module).__name__}")
        return getattr(pl_module, self.attribute)

    @staticmethod
    def weights(pl_module: L.LightningModule) -> EMAWeights | None:
        return getattr(pl_module, EMA_ATTRIBUTE, None)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self.weights(pl_module) is None:
            trainable_only = bool(getattr(pl_module, "ema_trainable_only", False))  # e.g. LoRA: adapters only
            setattr(pl_module, EMA_ATTRIBUTE, EMAWeights(self.target(pl_module), self.decay, trainable_only))
            self.weights(pl_module).source_attribute = self.attribute

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step >= self.start_step:
            self.weights(pl_module).update(self.target(pl_module))

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ema = self.weights(pl_module)
        if ema is None or trainer.sanity_checking or int(ema.num_updates) == 0:
            return
        ema.swap(self.target(pl_module))
        self._swapped = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._swapped:
            self.weights(pl_module).swap(self.target(pl_module))
            self._swapped = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ema = self.weights(pl_module)
        if not (self.export_dir and ema is not None and hasattr(pl_module, "export_weights")):
            return
        state = ema.averaged_state_dict()  # every rank takes part when sharded
        if trainer.is_global_zero:
            pl_module.export_weights(state, Path(self.export_dir))
