"""Video-VAE configuration and presets. Field names follow the diffusers ``AutoencoderKLLTXVideo``
config so released weights load by name; the research switches (uniform log-variance, noise
injection, timestep conditioning) are ours."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VAEConfig:
    """Everything that shapes the Video-VAE. Lists are per encoder / decoder stage."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 128
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)  # one per encoder stage, then the mid block
    spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    decoder_block_out_channels: tuple[int, ...] = (256, 512, 1024)
    decoder_layers_per_block: tuple[int, ...] = (5, 6, 7, 8)  # one per up stage (shallow first), then mid
    decoder_spatio_temporal_scaling: tuple[bool, ...] = (True, True, True)
    decoder_inject_noise: tuple[bool, ...] = (True, True, True, False)  # per up stage, then mid
    upsample_residual: tuple[bool, ...] = (True, True, True)
    upsample_factor: tuple[int, ...] = (2, 2, 2)
    timestep_conditioning: bool = True
    patch_size: int = 4
    resnet_norm_eps: float = 1e-6
    encoder_causal: bool = True
    decoder_causal: bool = False
    uniform_logvar: bool = True
    noise_injection: bool = True

    def __post_init__(self) -> None:
        for name in ("block_out_channels", "layers_per_block", "spatio_temporal_scaling", "decoder_block_out_channels",
                     "decoder_layers_per_block", "decoder_spatio_temporal_scaling", "decoder_inject_noise",
                     "upsample_residual", "upsample_factor"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        stages, up_stages = len(self.block_out_channels), len(self.decoder_block_out_channels)
        problems = []
        if len(self.layers_per_block) != stages + 1 or len(self.spatio_temporal_scaling) != stages:
            problems.append("layers_per_block needs one entry per encoder stage plus the mid block, "
                            "spatio_temporal_scaling one per encoder stage")
        for name in ("decoder_spatio_temporal_scaling", "upsample_residual", "upsample_factor"):
            if len(getattr(self, name)) != up_stages:
                problems.append(f"{name} needs one entry per decoder stage ({up_stages})")
        for name in ("decoder_layers_per_block", "decoder_inject_noise"):
            if len(getattr(self, name)) != up_stages + 1:
                problems.append(f"{name} needs one entry per decoder stage plus the mid block ({up_stages + 1})")
        if self.patch_size * 2 ** sum(self.spatio_temporal_scaling) != 32 or 2 ** sum(self.spatio_temporal_scaling) != 8:
            problems.append("the encoder must compress 32x in space and 8x in time (patch 4, three 2x stages)")
        if self.patch_size * 2 ** sum(self.decoder_spatio_temporal_scaling) != 32:
            problems.append("the decoder must expand 32x in space and 8x in time (three 2x stages)")
        if self.timestep_conditioning and not problems:
            current = self.decoder_block_out_channels[-1]
            for width, factor in zip(reversed(self.decoder_block_out_channels), reversed(self.upsample_factor)):
                if current // factor != width // factor:
                    problems.append("a timestep-conditioned decoder keeps the width inside each up stage "
                                    "(as the release does): adjust decoder_block_out_channels / upsample_factor")
                    break
                current = width // factor
        if problems:
            raise ValueError("invalid VAE config: " + "; ".join(problems))

    def replace(self, **changes: Any) -> VAEConfig:
        """A copy with ``changes``; unknown field names raise listing the valid ones."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"unknown VAE config field(s) {sorted(unknown)}; valid: {valid}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()}


def _tiny() -> VAEConfig:
    """CPU-sized (tests and the demo): the release's structure and compression, 1:192 (32x32x8 pixels x 3
    colours -> 128 latent channels), with one ResBlock per stage and 1/8 of its widths."""
    return VAEConfig(
        latent_channels=128, block_out_channels=(16, 32, 64, 64), layers_per_block=(1, 1, 1, 1, 1),
        decoder_block_out_channels=(32, 64, 128), decoder_layers_per_block=(1, 1, 1, 1),
    )


def _ltx_video_0_9_1() -> VAEConfig:
    """The released LTX-Video v0.9.1 Video-VAE (encoder ~180M, decoder ~755M parameters)."""
    return VAEConfig()


PRESETS: dict[str, Any] = {"tiny": _tiny, "ltx-video-0.9.1": _ltx_video_0_9_1}


def vae_config(preset: str, **overrides: Any) -> VAEConfig:
    """The config of ``preset`` with ``overrides``; an unknown preset raises listing the valid ones."""
    if preset not in PRESETS:
        raise ValueError(f"unknown VAE preset {preset!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[preset]().replace(**overrides) if overrides else PRESETS[preset]()


__all__ = ["PRESETS", "VAEConfig", "vae_config"]
