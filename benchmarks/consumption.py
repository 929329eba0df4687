"""How many samples per second a training step consumes (the rate the loaders must keep up with):
the tiny VAE on demo-sized video batches and the tiny DiT on demo-sized latent batches, forward +
backward + AdamW, batch 2."""

from __future__ import annotations

import torch

from benchmarks.harness import Timing, interleave
from ltx.models.dit import VideoTransformer, dit_config
from ltx.models.vae import VideoAutoencoder, vae_config


def _vae_step(video: torch.Tensor):
    model = VideoAutoencoder(vae_config("tiny")).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        posterior = model.encode(video)
        loss = (model.decode(posterior.sample(), torch.full((video.shape[0],), 0.05)) - video).pow(2).mean()
        loss.backward()
        optimizer.step()

    return step


def _dit_step(latents: torch.Tensor):
    model = VideoTransformer(dit_config("tiny")).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    text, mask = torch.randn(latents.shape[0], 128, 32), torch.ones(latents.shape[0], 128)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model(latents, torch.full((latents.shape[0],), 0.5), text, mask).pow(2).mean()
        loss.backward()
        optimizer.step()

    return step


def train_samples_per_s(quick: bool) -> dict[str, float]:
    """Samples/s of a training step: ``vae`` on (2, 3, 17, 128, 128) videos, ``dit`` on 48-token latents."""
    batch = 2
    steps = {"vae": _vae_step(torch.rand(batch, 3, 17, 128, 128) * 2 - 1),
             "dit": _dit_step(torch.randn(batch, 128, 3, 4, 4))}
    times = interleave(steps, repeats=2 if quick else 4, warmup=1)
    return {name: batch / Timing.of(seconds).median_s for name, seconds in times.items()}
