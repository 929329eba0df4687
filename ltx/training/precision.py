"""Precision choices that depend on the machine: bf16 autocast on a CPU only where the CPU computes bf16
natively (AVX-512 BF16 / AMX; oneDNN reports it), since elsewhere bf16 convolutions fall back to slow
reference kernels (measured on an AVX2-only AMD EPYC: a tiny-VAE step at batch 8 x 17 x 64 x 64 took 9.6 s in
bf16 autocast against 0.4 s in fp32)."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

RESOLVER = "cpu_bf16_or_fp32"


def cpu_supports_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_precision(preferred: str = "bf16-mixed") -> str:
    """``preferred`` (a Lightning precision) where the CPU runs bf16 natively, else ``32-true``."""
    return preferred if cpu_supports_bf16() else "32-true"


def register_resolvers() -> None:
    """``${cpu_bf16_or_fp32:bf16-mixed}`` in configs (e.g. experiment/vae_demo.yaml's trainer.precision)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda preferred="bf16-mixed": cpu_precision(preferred))


__all__ = ["cpu_precision", "cpu_supports_bf16", "register_resolvers"]
