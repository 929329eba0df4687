"""LoRA adapters in the format users share: diffusers' ``pytorch_lora_weights.safetensors``.

The file holds peft's adapter weights under ``transformer.`` (``transformer.transformer_blocks.0.attn1.to_q
.lora_A.weight``: what ``LTXPipeline.load_lora_weights`` reads) and, in the safetensors metadata under
``lora_adapter_metadata``, the peft ``LoraConfig`` with ``transformer.`` prefixed keys (rank, alpha, targets),
as diffusers' ``save_lora_weights(..., transformer_lora_adapter_metadata=...)`` writes it. Files without that
metadata (older diffusers exports) load with alpha = rank, as diffusers does.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ltx.training.lora import (
    ADAPTER_NAME,
    adapter_state_dict,
    load_adapter_state_dict,
    lora_layers,
    scale_adapters,
)

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
METADATA_KEY = "lora_adapter_metadata"
PREFIX = "transformer."


def write_lora_file(adapters: dict[str, torch.Tensor], config: LoraConfig, path: str | Path) -> Path:
    """Write adapter weights (peft names, as ``adapter_state_dict`` gives them) and their ``LoraConfig``:
    ``path`` is a directory (the file inside is ``pytorch_lora_weights.safetensors``) or a .safetensors file."""
    path = Path(path)
    file = path if path.suffix == ".safetensors" else path / LORA_WEIGHTS_NAME
    file.parent.mkdir(parents=True, exist_ok=True)
    metadata = {f"{PREFIX.rstrip('.')}.{key}": value for key, value in _jsonable(config.to_dict()).items()}
    tensors = {PREFIX + name: tensor.detach().cpu().contiguous() for name, tensor in adapters.items()}
    save_file(tensors, str(file), metadata={"format": "pt", METADATA_KEY: json.dumps(metadata, indent=2, sort_keys=True)})
    return file


def export_lora(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s adapters (added by ``ltx.training.lora.add_lora``) as a diffusers LoRA file."""
    config = getattr(model, "peft_config", {}).get(ADAPTER_NAME)
    if config is None or not lora_layers(model):
        raise ValueError("this model has no LoRA adapters to export (train with finetune=lora)")
    return write_lora_file(adapter_state_dict(model), config, path)


def read_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], LoraConfig]:
    """The adapter weights (peft names, without the ``transformer.`` prefix) and the ``LoraConfig`` of a diffusers
    LoRA file (or directory holding ``pytorch_lora_weights.safetensors``); without metadata the config is
    inferred from the weights: rank from ``lora_A``, alpha = rank, the adapted modules by name."""
    path = Path(path).expanduser()
    file = path / LORA_WEIGHTS_NAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no LoRA file at {file}: give a .safetensors file or a directory with {LORA_WEIGHTS_NAME}")
    with safe_open(str(file), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    unprefixed = [name for name in tensors if not name.startswith(PREFIX)]
    if unprefixed:
        raise ValueError(f"{file} has weights outside the transformer ({unprefixed[:3]}...): only transformer LoRAs "
                         f"in the diffusers / peft layout ({PREFIX}...lora_A.weight) are supported")
    adapters = {name.removeprefix(PREFIX): tensor for name, tensor in tensors.items()}
    if not any(".lora_A." in name for name in adapters):
        raise ValueError(f"{file} holds no lora_A / lora_B weights: not a peft-layout LoRA")
    return adapters, _config_from(metadata, adapters)


def _config_from(metadata: dict[str, str], adapters: dict[str, torch.Tensor]) -> LoraConfig:
    raw = metadata.get(METADATA_KEY)
    if raw:
        values = {key.removeprefix(PREFIX): value for key, value in json.loads(raw).items() if key.startswith(PREFIX)}
        known = set(LoraConfig.__dataclass_fields__)
        return LoraConfig(**{key: value for key, value in values.items() if key in known})
    ranks = {name.removesuffix(".lora_A.weight"): tensor.shape[0] for name, tensor in adapters.items()
             if name.endswith(".lora_A.weight")}
    rank = Counter(ranks.values()).most_common(1)[0][0]
    pattern = {module: r for module, r in ranks.items() if r != rank}
    return LoraConfig(r=rank, lora_alpha=rank, target_modules=sorted(ranks), rank_pattern=pattern,
                      alpha_pattern=dict(pattern))


def apply_lora_file(model: nn.Module, path: str | Path, scale: float = 1.0) -> nn.Module:
    """Add the adapters of a diffusers LoRA file to ``model`` (frozen; for sampling) at strength ``scale``."""
    adapters, config = read_lora_file(path)
    model.requires_grad_(False)
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    load_adapter_state_dict(model, adapters)
    scale_adapters(model, scale)
    return model.requires_grad_(False)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """``LoraConfig.to_dict()`` with sets as sorted lists (JSON has no sets)."""
    return {key: sorted(value) if isinstance(value, set) else value for key, value in values.items()}


__all__ = ["LORA_WEIGHTS_NAME", "apply_lora_file", "export_lora", "read_lora_file", "write_lora_file"]
