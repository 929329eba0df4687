"""Models from configs: a preset name, overrides, research switches and optional local weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ltx.interop.diffusers import load_transformer, load_vae
from ltx.models.dit import VideoTransformer, dit_config
from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.training.checkpoints import load_full_checkpoint, match_shapes
from ltx.training.ema import ema_state_dict, ema_trainable_state_dict
from ltx.training.lora import FinetuneSettings, add_lora, trainable_names

VAE_SWITCHES = ("uniform_logvar", "noise_injection", "timestep_conditioning")


def build_vae(model_cfg: Mapping[str, Any]) -> VideoAutoencoder:
    """A VAE from a ``model/vae`` config: ``preset``, ``overrides``, the switches, ``pretrained`` (a local
    diffusers-layout directory, or a .safetensors file of the same architecture) and ``latent_stats``
    (a .safetensors file with ``latents_mean`` / ``latents_std``)."""
    overrides = dict(model_cfg.get("overrides") or {})
    overrides.update({name: model_cfg[name] for name in VAE_SWITCHES if model_cfg.get(name) is not None})
    config = vae_config(model_cfg["preset"], **overrides)
    pretrained = model_cfg.get("pretrained")
    if pretrained:
        path = Path(pretrained).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"model.vae.pretrained={pretrained!r} does not exist; give a local diffusers-layout "
                                    f"VAE directory or .safetensors file (nothing is downloaded)")
        model = load_vae(path, config=None if path.is_dir() else config)
    else:
        model = VideoAutoencoder(config)
    if model_cfg.get("latent_stats"):
        load_latent_statistics(model, model_cfg["latent_stats"])
    return model


def read_latent_statistics(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel latent mean and std `(C,)` (float32) from a file written by ``ltx.cli.latent_stats``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no latent statistics file at {path}: write it with `python -m ltx.cli.latent_stats "
                                f"checkpoint=VAE_CHECKPOINT output={path}` (`make latent-stats`)")
    stats = load_file(str(path))
    missing = {"latents_mean", "latents_std"} - set(stats)
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}; write it with `python -m ltx.cli.latent_stats`")
    return stats["latents_mean"].float(), stats["latents_std"].float()


def load_latent_statistics(model: VideoAutoencoder, path: str | Path) -> None:
    """Set the VAE's per-channel latent statistics from a file written by ``ltx.cli.latent_stats``."""
    model.set_latent_statistics(*read_latent_statistics(path))


def vae_from_checkpoint(path: str | Path, use_ema: bool = True) -> VideoAutoencoder:
    """The VAE of a VAE-stage checkpoint (file or distributed directory), rebuilt from the config it
    holds; with ``use_ema`` the EMA weights when the checkpoint has them. Loaded with ``weights_only``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no VAE checkpoint at {path}: train one with `make train-vae` (or `make demo`, "
                                f"which writes DEMO_DIR/vae_run/checkpoints/last.ckpt, DEMO_DIR=outputs/demo by default), "
                                f"or set the path")
    model, _ = model_from_checkpoint(load_full_checkpoint(path), use_ema, expected_stage="vae", source=path)
    return model


DIT_FIELDS = ("positions", "rope_spacing", "rope_theta", "max_extent")


def build_dit(model_cfg: Mapping[str, Any]) -> VideoTransformer:
    """A DiT from a ``model/dit`` config: ``preset``, ``overrides``, positions / RoPE choices and
    ``pretrained`` (a local diffusers-layout transformer directory or .safetensors file)."""
    overrides = dict(model_cfg.get("overrides") or {})
    overrides.update({name: model_cfg[name] for name in DIT_FIELDS if model_cfg.get(name) is not None})
    if "max_extent" in overrides:
        overrides["max_extent"] = tuple(overrides["max_extent"])
    config = dit_config(model_cfg["preset"], **overrides)
    pretrained = model_cfg.get("pretrained")
    if not pretrained:
        return VideoTransformer(config)
    path = Path(pretrained).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model.dit.pretrained={pretrained!r} does not exist; give a local diffusers-layout "
                                f"transformer directory or .safetensors file (nothing is downloaded)")
    return load_transformer(path, config=None if path.is_dir() else config)


@dataclass(frozen=True)
class StageModel:
    """Where a stage keeps its trained model: the module attribute (state-dict prefix), its config key
    under ``model`` and the builder."""

    attribute: str
    config_key: str
    build: Callable[[Mapping[str, Any]], torch.nn.Module]


STAGE_MODELS = {"vae": StageModel("vae", "vae", build_vae), "dit": StageModel("transformer", "dit", build_dit)}


def model_from_checkpoint(checkpoint: Mapping[str, Any], use_ema: bool, expected_stage: str | None = None,
                          source: str | Path = "the checkpoint") -> tuple[torch.nn.Module, bool]:
    """A stage checkpoint's trained model (VAE or DiT), rebuilt from the config it holds, with its EMA
    weights when ``use_ema`` and the checkpoint has them, else its trained weights. Returns the model and
    whether the EMA weights were loaded."""
    cfg = checkpoint.get("hyper_parameters", {}).get("cfg") or {}
    stage = cfg.get("stage")
    if stage not in STAGE_MODELS or (expected_stage and stage != expected_stage):
        wanted = f"a {expected_stage.upper()}-stage checkpoint" if expected_stage else \
            f"a checkpoint of stage {' or '.join(sorted(STAGE_MODELS))}"
        raise ValueError(f"{source} is not {wanted} (its config names stage {stage!r})")
    spec = STAGE_MODELS[stage]
    finetune = FinetuneSettings.from_config(cfg.get("finetune")) if stage == "dit" else FinetuneSettings()
    model_cfg = {**cfg["model"][spec.config_key], "latent_stats": None}
    if not finetune.lora:
        model_cfg["pretrained"] = None  # every weight is in the checkpoint
    elif not model_cfg.get("pretrained") or not Path(model_cfg["pretrained"]).expanduser().exists():
        raise FileNotFoundError(f"{source} is a LoRA run's checkpoint (adapters only); its base DiT "
                                f"model.dit.pretrained={model_cfg.get('pretrained')!r} is not here")
    model = spec.build(model_cfg)
    prefix = f"{spec.attribute}."
    state = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if finetune.lora:  # the base from model.dit.pretrained, the adapters (EMA or trained) from the checkpoint
        add_lora(model, finetune)
        ema = ema_trainable_state_dict(checkpoint["state_dict"]) if use_ema else None
        weights = ema or state
        if set(weights) != trainable_names(model):
            raise ValueError(f"{source}: its adapter weights do not match finetune's rank / target_modules")
        model.load_state_dict(weights, strict=False)
        return model, ema is not None
    ema = ema_state_dict(checkpoint["state_dict"]) if use_ema else None
    model.load_state_dict(match_shapes(ema or state, model), strict=True)
    return model, ema is not None
