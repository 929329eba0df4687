"""Command-line entry points (Hydra)."""

from ltx.training.precision import register_resolvers

register_resolvers()  # config interpolations every command may meet (e.g. ${cpu_bf16_or_fp32:bf16-mixed})
