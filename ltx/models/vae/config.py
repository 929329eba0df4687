"""Video-VAE configuration and presets. Field names follow the diffusers ``AutoencoderKLLTXVideo``
config so released weights load by name; the research switches (uniform log-variance, noise
injection, timestep conditioning) are ours."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

LEGACY_DOWN_BLOCK = "LTXVideoDownBlock3D"  # v0.9.0 / v0.9.1: resnets, strided conv, widening resnet
SPACE_TO_DEPTH_DOWN_BLOCK = "LTXVideo095DownBlock3D"  # v0.9.5+: resnets, space-to-depth downsampler that widens
DOWN_BLOCK_TYPES = (LEGACY_DOWN_BLOCK, SPACE_TO_DEPTH_DOWN_BLOCK)
# Which axes each downsampling kind halves: (time, space).
DOWNSAMPLE_AXES = {"conv": (True, True), "spatial": (False, True), "temporal": (True, False),
                   "spatiotemporal": (True, True)}


@dataclass(frozen=True)
class VAEConfig:
    """Everything that shapes the Video-VAE. Lists are per encoder / decoder stage.

    Encoder stages are ``down_block_types`` (all one kind). ``LTXVideoDownBlock3D`` (v0.9.1) stages
    keep ``block_out_channels[i]`` through a strided conv and widen at the end (one width per stage);
    ``LTXVideo095DownBlock3D`` (v0.9.5) stages widen in their space-to-depth downsampler, from
    ``block_out_channels[i]`` to ``block_out_channels[i + 1]`` (one width more than stages), halving
    the axes their ``downsample_type`` names.
    """

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 128
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    down_block_types: tuple[str, ...] = (LEGACY_DOWN_BLOCK,) * 4
    downsample_type: tuple[str, ...] = ("conv",) * 4
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
        for name in ("block_out_channels", "down_block_types", "downsample_type", "layers_per_block",
                     "spatio_temporal_scaling", "decoder_block_out_channels",
                     "decoder_layers_per_block", "decoder_spatio_temporal_scaling", "decoder_inject_noise",
                     "upsample_residual", "upsample_factor"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        stages, up_stages = len(self.down_block_types), len(self.decoder_block_out_channels)
        problems = self._encoder_problems(stages)
        for name in ("decoder_spatio_temporal_scaling", "upsample_residual", "upsample_factor"):
            if len(getattr(self, name)) != up_stages:
                problems.append(f"{name} needs one entry per decoder stage ({up_stages})")
        for name in ("decoder_layers_per_block", "decoder_inject_noise"):
            if len(getattr(self, name)) != up_stages + 1:
                problems.append(f"{name} needs one entry per decoder stage plus the mid block ({up_stages + 1})")
        if not problems and self.compression() != (8, 32):
            problems.append(f"the encoder must compress 32x in space and 8x in time (patch 4, three 2x stages per "
                            f"axis); this one compresses {self.compression()[1]}x / {self.compression()[0]}x")
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

    def _encoder_problems(self, stages: int) -> list[str]:
        problems = []
        kinds = set(self.down_block_types)
        if not kinds <= set(DOWN_BLOCK_TYPES) or len(kinds) != 1:
            return [f"down_block_types must all be one of {', '.join(DOWN_BLOCK_TYPES)}; got {self.down_block_types}"]
        widens_in_downsampler = self.space_to_depth
        widths = stages + 1 if widens_in_downsampler else stages
        if len(self.block_out_channels) != widths:
            problems.append(f"block_out_channels needs {widths} entries for {stages} "
                            f"{self.down_block_types[0]} stages")
        if len(self.layers_per_block) != stages + 1:
            problems.append("layers_per_block needs one entry per encoder stage plus the mid block")
        for name in ("spatio_temporal_scaling", "downsample_type"):
            if len(getattr(self, name)) != stages:
                problems.append(f"{name} needs one entry per encoder stage ({stages})")
        allowed = tuple(DOWNSAMPLE_AXES) if widens_in_downsampler else ("conv",)
        if any(kind not in allowed for kind in self.downsample_type):
            problems.append(f"downsample_type of {self.down_block_types[0]} stages must be one of {allowed}; "
                            f"got {self.downsample_type}")
        if widens_in_downsampler and not problems:
            for index, downsamples in enumerate(self.spatio_temporal_scaling):
                low, high = self.block_out_channels[index], self.block_out_channels[index + 1]
                time, space = DOWNSAMPLE_AXES[self.downsample_type[index]]
                volume = (2 if time else 1) * (4 if space else 1)
                if not downsamples and low != high:
                    problems.append(f"encoder stage {index} widens {low} -> {high} but does not downsample: "
                                    "a space-to-depth stage can only widen in its downsampler")
                elif downsamples and (high % volume or (low * volume) % high):
                    problems.append(f"encoder stage {index}: {low} -> {high} channels must divide into the "
                                    f"{volume} space-to-depth positions evenly")
        return problems

    @property
    def space_to_depth(self) -> bool:
        """Whether the encoder uses the v0.9.5 space-to-depth down blocks."""
        return self.down_block_types[0] == SPACE_TO_DEPTH_DOWN_BLOCK

    def compression(self) -> tuple[int, int]:
        """(temporal, spatial) compression of the encoder."""
        temporal, spatial = 1, self.patch_size
        for downsamples, kind in zip(self.spatio_temporal_scaling, self.downsample_type):
            time, space = DOWNSAMPLE_AXES.get(kind, (True, True))
            temporal *= 2 if downsamples and time else 1
            spatial *= 2 if downsamples and space else 1
        return temporal, spatial

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


def _ltx_video_0_9_5() -> VAEConfig:
    """The Video-VAE that LTX-Video v0.9.5, v0.9.6 and v0.9.7 ship (diffusers'
    ``convert_ltx_to_diffusers.py``, versions 0.9.5 / 0.9.7): a wider encoder whose space-to-depth
    stages halve space, time, then both twice, and a decoder without noise injection."""
    return VAEConfig(
        block_out_channels=(128, 256, 512, 1024, 2048), down_block_types=(SPACE_TO_DEPTH_DOWN_BLOCK,) * 4,
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        layers_per_block=(4, 6, 6, 2, 2), spatio_temporal_scaling=(True, True, True, True),
        decoder_block_out_channels=(256, 512, 1024), decoder_layers_per_block=(5, 5, 5, 5),
        decoder_inject_noise=(False, False, False, False),
    )


def _tiny_0_9_5() -> VAEConfig:
    """The v0.9.5 architecture at CPU size (tests): 1/16 of its widths, one ResBlock per stage."""
    return _ltx_video_0_9_5().replace(
        block_out_channels=(8, 16, 32, 64, 128), layers_per_block=(1, 1, 1, 1, 1),
        decoder_block_out_channels=(32, 64, 128), decoder_layers_per_block=(1, 1, 1, 1),
    )


PRESETS: dict[str, Any] = {"tiny": _tiny, "tiny-0.9.5": _tiny_0_9_5, "ltx-video-0.9.1": _ltx_video_0_9_1,
                           "ltx-video-0.9.5": _ltx_video_0_9_5}


def vae_config(preset: str, **overrides: Any) -> VAEConfig:
    """The config of ``preset`` with ``overrides``; an unknown preset raises listing the valid ones."""
    if preset not in PRESETS:
        raise ValueError(f"unknown VAE preset {preset!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[preset]().replace(**overrides) if overrides else PRESETS[preset]()


__all__ = ["DOWN_BLOCK_TYPES", "PRESETS", "VAEConfig", "vae_config"]
