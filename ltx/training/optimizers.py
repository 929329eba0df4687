"""Optimizers beyond torch's, built from the ``optimizer`` config group: bitsandbytes' 8-bit AdamW."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adamw8bit(params: Iterable[torch.nn.Parameter], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.999),
              eps: float = 1e-8, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """bitsandbytes' ``AdamW8bit`` (block-wise 8-bit optimizer states; Dettmers et al. 2022). It runs on CUDA
    only, so without a GPU this raises before anything is trained."""
    params = list(params)
    if not torch.cuda.is_available():
        raise RuntimeError("optimizer=adamw8bit (bitsandbytes' 8-bit AdamW) needs a CUDA GPU and this machine has "
                           "none: use optimizer=adamw here, or run on a GPU machine (trainer=gpu / fsdp)")
    try:
        import bitsandbytes as bnb
    except ImportError as error:
        raise RuntimeError("optimizer=adamw8bit needs bitsandbytes: `pip install bitsandbytes` in this environment, "
                           "or use optimizer=adamw") from error
    if any(p.device.type != "cuda" for p in params):
        raise RuntimeError("optimizer=adamw8bit got parameters that are not on the GPU: train with "
                           "trainer.accelerator=gpu (trainer=gpu or fsdp)")
    return bnb.optim.AdamW8bit(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


__all__ = ["adamw8bit"]
