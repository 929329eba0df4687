"""The LTX Video-VAE: encode to a diagonal Gaussian over 1:192-compressed latents, decode (and
denoise) back to pixels, per-channel latent normalisation for the DiT, chunked decoding."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ltx.models.vae.config import VAEConfig
from ltx.models.vae.decoder import Decoder
from ltx.models.vae.encoder import Encoder
from ltx.shapes import TEMPORAL_COMPRESSION, check_video_shape


@dataclass
class DiagonalGaussian:
    """The posterior ``N(mean, exp(logvar))`` over latents `(B, C, F', H', W')`."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> DiagonalGaussian:
        """`(B, 2C, ...)` encoder output -> means and log-variances (clamped to [-30, 20], as released)."""
        mean, logvar = moments.chunk(2, dim=1)
        return cls(mean, logvar.clamp(-30.0, 20.0))

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean


class VideoAutoencoder(nn.Module):
    """Video `(B, 3, F, H, W)` in [-1, 1], F = 1 + 8k, H and W multiples of 32 <-> latents
    `(B, C, 1 + (F-1)/8, H/32, W/32)`.

    ``encode`` / ``decode`` work on raw latents, like the release; the DiT side calls
    ``normalize_latents`` / ``denormalize_latents`` with the per-channel statistics stored in the
    buffers ``latents_mean`` / ``latents_std`` (computed over shards by ``ltx.cli.latent_stats``).
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.register_buffer("latents_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latents_std", torch.ones(config.latent_channels))

    def encode(self, video: torch.Tensor) -> DiagonalGaussian:
        """`(B, 3, F, H, W)` -> posterior over `(B, C, F', H', W')`."""
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise ValueError(f"video must be (B, {self.config.in_channels}, F, H, W), got {tuple(video.shape)}")
        check_video_shape(*video.shape[2:], what=f"video of shape {tuple(video.shape)}")
        return DiagonalGaussian.from_moments(self.encoder(video))

    def decode(self, latents: torch.Tensor, timestep: torch.Tensor | float | None = None,
               generator: torch.Generator | None = None, chunk_frames: int | None = None) -> torch.Tensor:
        """`(B, C, F', H', W')` -> `(B, 3, 1 + 8(F'-1), 32H', 32W')`.

        ``timestep`` in [0, 1] tells the denoising decoder how noisy the latents are (0 when clean;
        defaults to 0). ``chunk_frames`` decodes that many latent frames at a time, each with enough
        neighbouring frames for the decoder's receptive field, so long videos decode in bounded memory
        with the same result as one pass.
        """
        if latents.ndim != 5 or latents.shape[1] != self.config.latent_channels:
            raise ValueError(f"latents must be (B, {self.config.latent_channels}, F', H', W'), got {tuple(latents.shape)}")
        timestep = self._timestep(timestep, latents)
        frames = latents.shape[2]
        if chunk_frames is None or chunk_frames >= frames:
            return self.decoder(latents, timestep, generator)
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        return self._decode_in_chunks(latents, timestep, generator, chunk_frames)

    def forward(self, video: torch.Tensor, timestep: torch.Tensor | float | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Encode, sample, decode: the reconstruction and the posterior."""
        posterior = self.encode(video)
        return self.decode(posterior.sample(generator), timestep, generator), posterior

    def normalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw -> per-channel standardised latents: ``(z - mean_c) / std_c``."""
        return (latents - self.latents_mean.view(1, -1, 1, 1, 1)) / self.latents_std.view(1, -1, 1, 1, 1)

    def denormalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of ``normalize_latents``."""
        return latents * self.latents_std.view(1, -1, 1, 1, 1) + self.latents_mean.view(1, -1, 1, 1, 1)

    def set_latent_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel statistics `(C,)` for ``normalize_latents``."""
        channels = self.config.latent_channels
        if mean.shape != (channels,) or std.shape != (channels,):
            raise ValueError(f"latent statistics must be ({channels},), got {tuple(mean.shape)} and {tuple(std.shape)}")
        if not torch.all(std > 0):
            raise ValueError("latent standard deviations must be positive")
        self.latents_mean.copy_(mean)
        self.latents_std.copy_(std)

    def decoder_temporal_context(self) -> int:
        """Latent frames on each side that can influence a decoded frame (the receptive-field radius)."""
        radius, rate = 0.0, 1.0  # in latent frames; rate = decoder frames per latent frame
        decoder = self.decoder
        radius += 1.0  # conv_in
        radius += 2.0 * len(decoder.mid_block.resnets)
        for block in decoder.up_blocks:
            if block.conv_in is not None:
                radius += 2.0 / rate
            if block.upsamplers is not None:
                radius += 1.0 / rate
                rate *= block.upsamplers[0].stride[0]
            radius += 2.0 * len(block.resnets) / rate
        radius += 1.0 / rate  # conv_out
        return math.ceil(radius)

    def _timestep(self, timestep: torch.Tensor | float | None, latents: torch.Tensor) -> torch.Tensor | None:
        if not self.config.timestep_conditioning:
            if timestep is not None and torch.as_tensor(timestep).abs().max() > 0:
                raise ValueError("this VAE has no timestep conditioning: it cannot decode noisy latents (t > 0)")
            return None
        timestep = torch.as_tensor(0.0 if timestep is None else timestep, dtype=torch.float32, device=latents.device)
        return timestep.reshape(-1).expand(latents.shape[0])  # (B,)

    def _decode_in_chunks(self, latents: torch.Tensor, timestep: torch.Tensor | None,
                          generator: torch.Generator | None, chunk_frames: int) -> torch.Tensor:
        """Decode ``[start, end)`` latent frames with ``context`` extra frames each side and keep the
        pixels of ``[start, end)``: latent frame 0 gives pixel frame 0, latent frame j >= 1 gives pixel
        frames 8j-7 .. 8j. Every chunk replays the same noise maps (they depend on H, W only)."""
        frames, context = latents.shape[2], self.decoder_temporal_context()
        if generator is None:
            generator = torch.Generator(latents.device).manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        seed_state = generator.get_state()
        pieces = []
        for start in range(0, frames, chunk_frames):
            end = min(frames, start + chunk_frames)
            low, high = max(0, start - context), min(frames, end + context)
            generator.set_state(seed_state)
            pixels = self.decoder(latents[:, :, low:high], timestep, generator)  # (B, 3, 1 + 8(n-1), H, W)
            first = 0 if start == 0 else TEMPORAL_COMPRESSION * start - (TEMPORAL_COMPRESSION - 1)
            last = TEMPORAL_COMPRESSION * (end - 1) + 1
            offset = TEMPORAL_COMPRESSION * low
            pieces.append(pixels[:, :, first - offset : last - offset])
        return torch.cat(pieces, dim=2)  # (B, 3, 1 + 8(F'-1), H, W)
