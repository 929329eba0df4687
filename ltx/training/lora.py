"""LoRA adapters on the DiT through peft: add them (freezing the base), read and write their weights, scale
them and merge them into full weights. Fine-tuning mode and its settings come from the ``finetune`` config
group (``full`` or ``lora``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from torch import nn

from ltx.training.parallelize import state_dict_name

# Self- and cross-attention q / k / v / out and the feed-forward projections; the module names are the
# same in our DiT and in diffusers' LTXVideoTransformer3DModel, so the adapters load there by name.
DEFAULT_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
ADAPTER_NAME = "default"
FINETUNE_MODES = ("full", "lora")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class FinetuneSettings:
    """``finetune`` config: ``mode`` full (every weight trains) or lora (only adapters train), the LoRA rank,
    alpha, dropout and targets (a list of module-name suffixes, or one regex over full module names), and the
    dtype the frozen base is held in (``base_dtype``: null keeps the model's, bfloat16 halves its memory)."""

    mode: str = "full"
    rank: int = 32
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | str = DEFAULT_TARGET_MODULES
    base_dtype: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in FINETUNE_MODES:
            raise ValueError(f"unknown finetune.mode {self.mode!r}; valid: {', '.join(FINETUNE_MODES)}")
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"finetune.rank must be a positive int, got {self.rank!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"finetune.dropout must be in [0, 1), got {self.dropout!r}")
        if self.base_dtype is not None and self.base_dtype not in _DTYPES:
            raise ValueError(f"finetune.base_dtype must be null or one of {', '.join(_DTYPES)}, got {self.base_dtype!r}")
        if not isinstance(self.target_modules, str):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
            if not self.target_modules:
                raise ValueError("finetune.target_modules is empty: name module suffixes (e.g. to_q) or give a regex")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> FinetuneSettings:
        values = dict(cfg or {})
        known = {field.name for field in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown finetune settings {sorted(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**values)

    @property
    def lora(self) -> bool:
        return self.mode == "lora"

    def peft_config(self) -> LoraConfig:
        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets,
                          init_lora_weights=True)


def add_lora(model: nn.Module, settings: FinetuneSettings) -> nn.Module:
    """Freeze ``model`` (optionally cast to ``base_dtype``) and add LoRA adapters in place (peft's
    ``inject_adapter_in_model``); the adapters (float32, B initialised to zero so the model's output is
    unchanged) are the only parameters that require gradients."""
    if settings.base_dtype is not None:
        model.to(_DTYPES[settings.base_dtype])
    model.requires_grad_(False)
    try:
        inject_adapter_in_model(settings.peft_config(), model, adapter_name=ADAPTER_NAME)
    except ValueError as error:
        raise ValueError(f"finetune.target_modules={settings.target_modules!r} matches no layer of the DiT ({error}); "
                         f"module names look like transformer_blocks.0.attn1.to_q (default targets: "
                         f"{', '.join(DEFAULT_TARGET_MODULES)})") from error
    for module in lora_layers(model):
        for adapter in (module.lora_A, module.lora_B):
            adapter.to(torch.float32)
    return model


def lora_layers(model: nn.Module) -> list[LoraLayer]:
    return [module for module in model.modules() if isinstance(module, LoraLayer)]


def has_lora(model: nn.Module) -> bool:
    return bool(lora_layers(model))


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights with peft's portable names (``...to_q.lora_A.weight``, no adapter name)."""
    return {name: tensor.detach() for name, tensor in get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME).items()}


def load_adapter_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load adapter weights named as ``adapter_state_dict`` writes them; a missing or unexpected adapter weight raises."""
    expected = set(adapter_state_dict(model))
    given = set(state)
    if expected != given:
        raise ValueError(f"the adapter weights do not match the model's adapters: missing {sorted(expected - given)[:6]} "
                         f"({len(expected - given)} in all), unexpected {sorted(given - expected)[:6]} "
                         f"({len(given - expected)} in all); were they trained with other target_modules?")
    set_peft_model_state_dict(model, dict(state), adapter_name=ADAPTER_NAME)


def scale_adapters(model: nn.Module, scale: float) -> None:
    """Set every adapter's strength to ``scale`` x alpha / rank (1.0: as trained, 0.0: the base model)."""
    for module in lora_layers(model):
        module.set_scale(ADAPTER_NAME, scale)


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full weights with the adapters merged in (peft's ``merge``), named like the model without
    adapters (``...to_q.weight``); the model itself is left unmerged."""
    layers = lora_layers(model)
    for module in layers:
        module.merge(adapter_names=[ADAPTER_NAME])
    try:
        state = {}
        for name, tensor in model.state_dict().items():
            if ".lora_" in name:  # lora_A / lora_B (and peft's lora_ containers): not part of the merged model
                continue
            state[name.replace(".base_layer.", ".")] = tensor.detach().clone()
    finally:
        for module in layers:
            module.unmerge()
    return state


def trainable_names(model: nn.Module) -> set[str]:
    """State-dict names of the parameters that require gradients (wrapped blocks spelled as unwrapped)."""
    return {state_dict_name(name) for name, parameter in model.named_parameters() if parameter.requires_grad}


__all__ = ["DEFAULT_TARGET_MODULES", "FinetuneSettings", "adapter_state_dict", "add_lora", "has_lora",
           "load_adapter_state_dict", "lora_layers", "merged_state_dict", "scale_adapters", "trainable_names"]
