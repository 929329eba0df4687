"""What every training stage shares: parallelization in ``configure_model`` (FSDP2 under
``trainer=fsdp``, activation checkpointing and compilation from ``parallel``), step-seeded randomness
(so a resumed run draws what an uninterrupted one would, and the draws do not depend on the number of
ranks) and rebuilding a plain model from gathered weights for export."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from omegaconf import DictConfig
from torch import nn
from torch.distributed.tensor import DTensor

from ltx.training.data_parallel import ddp_strategy, leave_out_of_module_ddp, own_ddp
from ltx.training.ema import EMA_ATTRIBUTE, EMA_AVERAGES_PREFIX, EMA_PREFIX
from ltx.training.parallelize import ParallelSettings, parallelize
from ltx.training.randomness import BatchRandomness

log = logging.getLogger(__name__)


class TrainingStage(L.LightningModule):
    """Base of the stages. Subclasses set ``cfg`` and list in ``parallel_targets`` the attribute names of
    the modules they train (sharded under FSDP2; frozen modules stay replicated)."""

    cfg: DictConfig
    parallel_targets: tuple[str, ...] = ()
    # Modules trained in backward passes of their own (the GAN's discriminator): under trainer=ddp each
    # gets a DDP of its own, which ``replica`` returns (see ltx.training.data_parallel).
    separately_reduced: tuple[str, ...] = ()

    @property
    def sharded(self) -> bool:
        """True under ``ModelParallelStrategy`` (FSDP2): every rank must take part in each forward."""
        trainer = self._trainer
        return trainer is not None and isinstance(trainer.strategy, ModelParallelStrategy)

    def configure_model(self) -> None:
        if getattr(self, "_parallelized", False):
            return
        settings = ParallelSettings.from_config(self.cfg.get("parallel"))
        mesh = self.device_mesh["data_parallel"] if self.sharded else None
        self.check_parallel_support(settings, mesh is not None)
        for name in self.parallel_targets:
            module = getattr(self, name, None)
            if module is not None:
                parallelize(module, settings, mesh)
        separate = [name for name in self.separately_reduced if getattr(self, name, None) is not None]
        if separate and ddp_strategy(self._trainer) is not None:  # before Lightning wraps this module in its DDP
            leave_out_of_module_ddp(self, separate)
        ema = getattr(self, EMA_ATTRIBUTE, None)
        if ema is not None and ema.trainable_only:
            ema.track(getattr(self, ema.source_attribute))  # averages shaped (sharded) like the parameters
        elif ema is not None and mesh is not None:
            parallelize(ema.module, settings, mesh, trained=False)  # same shards as the trained copy
        self._parallelized = True
        if mesh is not None or settings.activation_checkpointing or settings.compile:
            parameters = [p for name in self.parallel_targets if getattr(self, name, None) is not None
                          for p in getattr(self, name).parameters()]
            sharded = sum(isinstance(p, DTensor) for p in parameters)
            log.info("parallelized %s (%s): %d of %d parameters are DTensors sharded over %s",
                     ", ".join(self.parallel_targets), settings, sharded, len(parameters), mesh)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip as Lightning would (automatic optimization), also for a fused optimizer when no gradient
        scaler is in use.

        Lightning's mixed-precision plugin refuses to clip for any optimizer that unscales inside its
        step (``fused=True``), because under fp16 the gradients would still be scaled here. Under bf16
        or fp32 there is no scaler and the gradients are the true ones, so clipping them is exact.
        """
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if not gradient_clip_val or scaler is not None:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        parameters = [parameter for group in optimizer.param_groups for parameter in group["params"]]
        if str(gradient_clip_algorithm or "norm").lower().endswith("value"):
            torch.nn.utils.clip_grad_value_(parameters, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, gradient_clip_val)

    def on_fit_start(self) -> None:
        """Under trainer=ddp: the DDPs of the ``separately_reduced`` modules (subclasses that override this
        must call it)."""
        strategy = ddp_strategy(self._trainer)
        self._own_ddp = {name: own_ddp(getattr(self, name), strategy) for name in self.separately_reduced
                         if strategy is not None and getattr(self, name, None) is not None}

    def on_fit_end(self) -> None:
        self._own_ddp = {}

    def replica(self, name: str) -> nn.Module:
        """The module ``name`` (one of ``separately_reduced``) to call for the forward of its own backward
        pass: in its own DDP under trainer=ddp, so that this backward averages its gradients over ranks;
        else the module itself."""
        own = getattr(self, "_own_ddp", None)
        if own is None and self._trainer is not None and ddp_strategy(self._trainer) is not None:
            raise RuntimeError(f"{name} has no DDP of its own, so its gradients would not be averaged over ranks: "
                               f"{type(self).__name__}.on_fit_start must call super().on_fit_start()")
        return own[name] if own and name in own else getattr(self, name)

    def check_parallel_support(self, settings: ParallelSettings, sharding: bool) -> None:
        """Stages raise here for combinations they cannot train."""

    checkpoint_ema: dict[str, torch.Tensor] | None = None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Outside training there is no EMA copy to load into: the checkpoint's EMA weights are set aside
        as ``checkpoint_ema`` (full state-dict names), so ``load_from_checkpoint`` loads strictly."""
        state = checkpoint.get("state_dict")
        if state is None or getattr(self, EMA_ATTRIBUTE, None) is not None:
            return
        ema_keys = [key for key in state if key.startswith((EMA_PREFIX, EMA_AVERAGES_PREFIX))
                    or key == f"{EMA_ATTRIBUTE}.num_updates"]
        self.checkpoint_ema = {key: state.pop(key) for key in ema_keys} or None

    def batch_randomness(self, local_batch: int, device: torch.device, seed: int | None = None,
                         step: int | None = None) -> BatchRandomness:
        """This step's random draws: a function of (seed, step) and each sample's index in the global batch,
        so they are the same after a resume and for any number of ranks with the same global batch.
        Defaults: the run's seed and the global step."""
        seed = int(self.cfg.get("seed", 0)) if seed is None else seed
        step = self.global_step if step is None else step
        world_size = self.trainer.world_size if self._trainer is not None else 1
        return BatchRandomness(seed, step, self.global_rank, world_size, local_batch, device)

    def on_train_batch_start(self, batch: Any, batch_index: int) -> None:
        # Draws from the global generators (e.g. the VAE decoder's noise injection) are seeded per step
        # and rank, so a resumed run repeats them exactly.
        torch.manual_seed(BatchRandomness.mix(int(self.cfg.get("seed", 0)), self.global_step, self.global_rank))


def rebuild_with_weights(factory: Callable[[], nn.Module], state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """A plain (unsharded, unwrapped) model from ``factory`` with ``state_dict``'s weights (for export)."""
    model = factory()
    model.load_state_dict(state_dict, strict=True)
    return model
