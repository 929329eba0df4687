"""The diffusers weight layout: read released weights into our models and write ours back.

A diffusers model directory holds ``config.json`` and ``diffusion_pytorch_model.safetensors`` (or
shards listed in ``diffusion_pytorch_model.safetensors.index.json``). Our module names mirror the
diffusers ones, so weights map by name; the configs are translated field by field. Loading uses
safetensors only (no pickles), and nothing is fetched: paths are local.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ltx.models.dit import DiTConfig, VideoTransformer
from ltx.models.vae import VAEConfig, VideoAutoencoder
from ltx.models.vae.config import DOWN_BLOCK_TYPES

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
DIFFUSERS_VERSION = "0.35.2"
VAE_CLASS = "AutoencoderKLLTXVideo"
TRANSFORMER_CLASS = "LTXVideoTransformer3DModel"
_TRANSFORMER_FIELDS = (
    "in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "cross_attention_dim",
    "num_layers", "caption_channels", "norm_eps", "attention_bias", "attention_out_bias",
)
_VAE_FIELDS = (
    "in_channels", "out_channels", "latent_channels", "block_out_channels", "down_block_types", "downsample_type",
    "layers_per_block", "spatio_temporal_scaling", "decoder_block_out_channels", "decoder_layers_per_block",
    "decoder_spatio_temporal_scaling", "decoder_inject_noise", "upsample_residual", "upsample_factor",
    "timestep_conditioning", "patch_size", "resnet_norm_eps", "encoder_causal", "decoder_causal",
)


def vae_config_to_diffusers(config: VAEConfig) -> dict[str, Any]:
    """Our VAE config as ``AutoencoderKLLTXVideo`` constructor arguments."""
    if not config.uniform_logvar:
        raise ValueError("diffusers' AutoencoderKLLTXVideo always shares one log-variance channel; "
                         "a per-channel log-variance VAE (uniform_logvar=false) cannot be exported")
    values = {name: getattr(config, name) for name in _VAE_FIELDS}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    if not config.noise_injection:
        values["decoder_inject_noise"] = [False] * len(config.decoder_inject_noise)
    temporal, spatial = config.compression()
    return {**values, "patch_size_t": 1, "scaling_factor": 1.0, "spatial_compression_ratio": spatial,
            "temporal_compression_ratio": temporal}


def vae_config_from_diffusers(values: dict[str, Any]) -> VAEConfig:
    """An ``AutoencoderKLLTXVideo`` config.json as our VAE config (v0.9.0 / v0.9.1 / v0.9.5+ architectures)."""
    block_types = set(values.get("down_block_types", ["LTXVideoDownBlock3D"]))
    if not block_types <= set(DOWN_BLOCK_TYPES) or len(block_types) != 1:
        raise ValueError(f"unsupported encoder blocks {sorted(block_types)}: this loader reads one kind of "
                         f"{' or '.join(DOWN_BLOCK_TYPES)} (the v0.9.0-v0.9.7 VAEs)")
    if values.get("patch_size_t", 1) != 1:
        raise ValueError(f"unsupported patch_size_t={values['patch_size_t']}: only 1 is supported")
    if values.get("scaling_factor", 1.0) != 1.0:
        raise ValueError("unsupported scaling_factor != 1.0: LTX-Video normalises latents per channel instead")
    defaults = VAEConfig()
    kwargs = {name: values.get(name, getattr(defaults, name)) for name in _VAE_FIELDS}
    if "downsample_type" not in values:  # configs written before diffusers had the field: one per stage
        kwargs["downsample_type"] = ("conv",) * len(kwargs["down_block_types"])
    config = VAEConfig(**kwargs)
    temporal, spatial = config.compression()
    for name, ours in (("temporal_compression_ratio", temporal), ("spatial_compression_ratio", spatial)):
        if values.get(name) not in (None, ours):
            raise ValueError(f"config.json says {name}={values[name]} but its blocks compress {ours}x")
    return config


def read_safetensors_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file, or from a diffusers directory (single or sharded)."""
    path = Path(path)
    if path.is_file():
        return load_file(str(path))
    if (path / WEIGHTS_NAME).exists():
        return load_file(str(path / WEIGHTS_NAME))
    if (path / WEIGHTS_INDEX_NAME).exists():
        index = json.loads((path / WEIGHTS_INDEX_NAME).read_text())
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_file(str(path / shard)))
        return state
    raise FileNotFoundError(f"no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME} in {path}; point at a diffusers-layout "
                            f"model directory (config.json + safetensors) or a .safetensors file")


def load_state_dict_strictly(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model``; missing or unexpected names raise listing a few of each."""
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{what} weights do not match the model: missing {result.missing_keys[:8]} "
                         f"({len(result.missing_keys)} in all), unexpected {result.unexpected_keys[:8]} "
                         f"({len(result.unexpected_keys)} in all)")


def read_diffusers_config(path: Path, class_name: str) -> dict[str, Any]:
    """The config.json of a diffusers-layout model directory, checked to describe ``class_name``."""
    config_path = path / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{path} has no config.json: not a diffusers-layout model directory")
    values = json.loads(config_path.read_text())
    if values.get("_class_name", class_name) != class_name:
        raise ValueError(f"{config_path} describes a {values['_class_name']}, not an {class_name}")
    return values


def write_diffusers_model(model: torch.nn.Module, config: dict[str, Any], class_name: str, path: Path) -> Path:
    """``config.json`` (with ``_class_name``) and safetensors weights: a diffusers model directory."""
    path.mkdir(parents=True, exist_ok=True)
    values = {"_class_name": class_name, "_diffusers_version": DIFFUSERS_VERSION, **config}
    (path / "config.json").write_text(json.dumps(values, indent=2))
    save_file(_contiguous_state(model), str(path / WEIGHTS_NAME), metadata={"format": "pt"})
    return path


def _contiguous_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}


def load_vae(path: str | Path, config: VAEConfig | None = None) -> VideoAutoencoder:
    """Our VAE from a diffusers-layout directory (its config.json decides the architecture), or from a
    ``.safetensors`` file with diffusers / our names and an explicit ``config``."""
    return _load_model(Path(path), config, VAE_CLASS, vae_config_from_diffusers, VideoAutoencoder, "VAE")


def export_vae(model: VideoAutoencoder, path: str | Path) -> Path:
    """Write ``model`` as a directory that ``diffusers.AutoencoderKLLTXVideo.from_pretrained`` loads."""
    return write_diffusers_model(model, vae_config_to_diffusers(model.config), VAE_CLASS, Path(path))


def vae_diffusers_can_describe(config: VAEConfig) -> bool:
    """Whether ``AutoencoderKLLTXVideo`` can express ``config`` (see ``vae_config_to_diffusers``)."""
    try:
        vae_config_to_diffusers(config)
    except ValueError:
        return False
    return True


def export_vae_native(model: VideoAutoencoder, path: str | Path) -> Path:
    """Write ``model`` as ``vae.safetensors`` plus our ``ltx_vae_config.json``, for VAEs diffusers cannot
    describe (per-channel log-variance); ``load_vae(path / "vae.safetensors", VAEConfig(**json))`` reads it."""
    return _write_native(model, model.config.to_dict(), Path(path), "vae.safetensors", "ltx_vae_config.json")


def _write_native(model: torch.nn.Module, config: dict[str, Any], path: Path, weights: str, config_name: str) -> Path:
    """Our own layout, for models diffusers cannot describe: safetensors weights and our config as JSON."""
    path.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous_state(model), str(path / weights), metadata={"format": "pt"})
    (path / config_name).write_text(json.dumps(config, indent=2))
    return path


def transformer_config_to_diffusers(config: DiTConfig) -> dict[str, Any]:
    """Our DiT config as ``LTXVideoTransformer3DModel`` constructor arguments.

    diffusers hard-codes the release's positions (relative-fractional, 20 s / 2048 px), exponential
    RoPE spacing with theta 10000 and t x 1000; other choices cannot be expressed there.
    """
    release = DiTConfig()
    differences = [name for name in ("positions", "rope_spacing", "rope_theta", "max_extent", "timestep_scale")
                   if getattr(config, name) != getattr(release, name)]
    if differences:
        raise ValueError(f"diffusers' {TRANSFORMER_CLASS} only supports the release's {differences}; "
                         f"this model uses {[getattr(config, n) for n in differences]}")
    values = {name: getattr(config, name) for name in _TRANSFORMER_FIELDS}
    return {**values, "patch_size": 1, "patch_size_t": 1, "activation_fn": "gelu-approximate",
            "qk_norm": "rms_norm_across_heads", "norm_elementwise_affine": False}


def transformer_config_from_diffusers(values: dict[str, Any]) -> DiTConfig:
    """An ``LTXVideoTransformer3DModel`` config.json as our DiT config."""
    for name, supported in (("patch_size", 1), ("patch_size_t", 1), ("activation_fn", "gelu-approximate"),
                            ("qk_norm", "rms_norm_across_heads"), ("norm_elementwise_affine", False)):
        if values.get(name, supported) != supported:
            raise ValueError(f"unsupported {name}={values[name]!r} (only {supported!r})")
    defaults = DiTConfig()
    return DiTConfig(**{name: values.get(name, getattr(defaults, name)) for name in _TRANSFORMER_FIELDS})


def load_transformer(path: str | Path, config: DiTConfig | None = None) -> VideoTransformer:
    """Our DiT from a diffusers-layout directory, or from a ``.safetensors`` file and its ``config``."""
    return _load_model(Path(path), config, TRANSFORMER_CLASS, transformer_config_from_diffusers, VideoTransformer,
                       "transformer")


def _load_model(path: Path, config: Any, class_name: str, config_from_diffusers: Any, model_class: Any,
                what: str) -> Any:
    """Build ``model_class`` from a diffusers directory's config (or the given ``config`` for a single
    weights file) and load its safetensors weights strictly."""
    if path.is_dir():
        config = config_from_diffusers(read_diffusers_config(path, class_name))
    elif config is None:
        raise ValueError(f"{path} is a single weights file: pass the {what} config (preset) it was trained with")
    model = model_class(config)
    load_state_dict_strictly(model, read_safetensors_state_dict(path), f"{what} ({path})")
    return model


def export_transformer(model: VideoTransformer, path: str | Path) -> Path:
    """Write ``model`` as a directory that ``diffusers.LTXVideoTransformer3DModel.from_pretrained`` loads."""
    return write_diffusers_model(model, transformer_config_to_diffusers(model.config), TRANSFORMER_CLASS, Path(path))


def diffusers_can_describe(config: DiTConfig) -> bool:
    """Whether ``LTXVideoTransformer3DModel`` can express ``config`` (see ``transformer_config_to_diffusers``)."""
    try:
        transformer_config_to_diffusers(config)
    except ValueError:
        return False
    return True


def export_transformer_native(model: VideoTransformer, path: str | Path) -> Path:
    """Write ``model`` as ``transformer.safetensors`` plus our ``ltx_dit_config.json``, for DiTs diffusers
    cannot describe; ``load_transformer(path / "transformer.safetensors", DiTConfig(**json))`` reads it."""
    return _write_native(model, dataclasses.asdict(model.config), Path(path), "transformer.safetensors",
                         "ltx_dit_config.json")


SCHEDULER_CONFIG = {  # the release's FlowMatchEulerDiscreteScheduler settings (token-count shift, terminal 0.1)
    "_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": DIFFUSERS_VERSION,
    "base_image_seq_len": 1024, "base_shift": 0.95, "invert_sigmas": False, "max_image_seq_len": 4096,
    "max_shift": 2.05, "num_train_timesteps": 1000, "shift": 1.0, "shift_terminal": 0.1,
    "use_beta_sigmas": False, "use_dynamic_shifting": True, "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}
PIPELINE_INDEX = {
    "_class_name": "LTXPipeline", "_diffusers_version": DIFFUSERS_VERSION,
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", TRANSFORMER_CLASS],
    "vae": ["diffusers", VAE_CLASS],
}


def export_pipeline(vae: VideoAutoencoder, transformer: VideoTransformer, text_encoder_dir: str | Path,
                    tokenizer_dir: str | Path, path: str | Path) -> Path:
    """Write a directory that ``diffusers.LTXPipeline.from_pretrained`` loads: our VAE and transformer,
    the release's scheduler config, and a local T5 text encoder and tokenizer (copied as they are)."""
    path = Path(path)
    sources = {"text_encoder": Path(text_encoder_dir), "tokenizer": Path(tokenizer_dir)}
    for name, source in sources.items():
        if not (source / ("config.json" if name == "text_encoder" else "tokenizer_config.json")).exists():
            raise FileNotFoundError(f"{source} is not a saved T5 {name.replace('_', ' ')} directory (save_pretrained)")
    if transformer.config.caption_channels != _text_encoder_width(sources["text_encoder"]):
        raise ValueError(f"the transformer expects {transformer.config.caption_channels}-d text features but the "
                         f"text encoder in {sources['text_encoder']} produces {_text_encoder_width(sources['text_encoder'])}")
    path.mkdir(parents=True, exist_ok=True)
    export_vae(vae, path / "vae")
    export_transformer(transformer, path / "transformer")
    (path / "scheduler").mkdir(exist_ok=True)
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2))
    for name, source in sources.items():
        shutil.copytree(source, path / name, dirs_exist_ok=True)
    index = {**PIPELINE_INDEX, "tokenizer": ["transformers", _tokenizer_class(sources["tokenizer"])]}
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path


def _tokenizer_class(directory: Path) -> str:
    """The transformers class the pipeline loads the tokenizer with: T5TokenizerFast for a T5 tokenizer (the
    release's), the generic PreTrainedTokenizerFast for one saved as such (the tiny word-level stand-in of
    ltx.text.tiny, which a T5 tokenizer class would rebuild as SentencePiece under transformers 5)."""
    saved = json.loads((directory / "tokenizer_config.json").read_text()).get("tokenizer_class")
    return "PreTrainedTokenizerFast" if saved in ("PreTrainedTokenizerFast", "TokenizersBackend") else "T5TokenizerFast"


def _text_encoder_width(directory: Path) -> int:
    values = json.loads((directory / "config.json").read_text())
    return int(values.get("d_model") or values.get("hidden_size"))
