"""Per-channel latent mean and standard deviation over shards, for ``normalize_latents``.

``python -m ltx.cli.latent_stats checkpoint=RUN/checkpoints/last.ckpt output=stats.safetensors``; then
point ``model.vae.latent_stats`` at the file (the DiT trains on standardised latents).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from safetensors.torch import save_file

from ltx.cli.train import CONFIG_DIR
from ltx.models.vae import VideoAutoencoder
from ltx.training.build import build_vae, vae_from_checkpoint


class ChannelMoments:
    """Running per-channel count, sum and sum of squares (float64) over `(B, C, ...)` tensors."""

    def __init__(self, channels: int):
        self.count = 0
        self.total = torch.zeros(channels, dtype=torch.float64)
        self.squares = torch.zeros(channels, dtype=torch.float64)

    def update(self, latents: torch.Tensor) -> None:
        values = latents.detach().double().transpose(0, 1).flatten(1)  # (C, N)
        self.count += values.shape[1]
        self.total += values.sum(dim=1).cpu()
        self.squares += values.pow(2).sum(dim=1).cpu()

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.count < 2:
            raise ValueError("need at least two latent positions to estimate a standard deviation")
        mean = self.total / self.count
        variance = (self.squares / self.count - mean.pow(2)).clamp_min(0) * self.count / (self.count - 1)
        return mean.float(), variance.sqrt().float().clamp_min(1e-6)


@torch.no_grad()
def latent_statistics(vae: VideoAutoencoder, batches, max_batches: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Statistics of the posterior means of up to ``max_batches`` batches; also the positions counted."""
    moments = ChannelMoments(vae.config.latent_channels)
    for index, batch in enumerate(batches):
        if index >= max_batches:
            break
        moments.update(vae.encode(batch["video"]).mean)  # (B, C, F', H', W')
    mean, std = moments.mean_std()
    return mean, std, moments.count


def run(cfg: DictConfig) -> Path:
    L.seed_everything(cfg.seed)
    vae = vae_from_checkpoint(cfg.checkpoint, cfg.use_ema) if cfg.checkpoint else build_vae(cfg.model.vae)
    vae.eval()
    datamodule = instantiate(cfg.data, batches_per_epoch=cfg.batches)
    mean, std, count = latent_statistics(vae, datamodule.train_dataloader(), cfg.batches)
    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latents_mean": mean, "latents_std": std}, str(output), metadata={"positions": str(count)})
    print(f"latent statistics over {count} positions written to {output}")
    print(f"  mean range [{mean.min():.4f}, {mean.max():.4f}], std range [{std.min():.4f}, {std.max():.4f}]")
    return output


@hydra.main(config_path=str(CONFIG_DIR), config_name="latent_stats", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
