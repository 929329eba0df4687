"""Precompute latent shards for DiT training: ``python -m ltx.cli.precompute [overrides]``.

Encodes every sample of the data config's shards once (VAE posterior mean, normalised with the VAE's
latent statistics; text features of the caption) and writes ``output/train`` (and ``output/val``),
replacing the shards an earlier run left there. Every shard's stats JSON records the VAE and the latent
statistics that made it (``ltx.training.latent_record``): DiT training and sampling refuse other ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ltx.cli.train import CONFIG_DIR
from ltx.data.latents import LatentSample
from ltx.data.shards import ShardStats, stats_path, write_shards
from ltx.models.vae import VideoAutoencoder
from ltx.registry import TEXT_ENCODERS
from ltx.text.encoders import TextEncoder
from ltx.training.build import build_vae, load_latent_statistics, vae_from_checkpoint
from ltx.training.latent_record import RECORD_KEY, LatentRecord


@torch.no_grad()
def encode_batches(batches, vae: VideoAutoencoder, text_encoder: TextEncoder) -> Iterator[LatentSample]:
    """Latent samples of every video batch."""
    for batch in batches:
        latents = vae.normalize_latents(vae.encode(batch["video"]).mean)  # (B, C, F', H', W')
        references = None
        if "reference_video" in batch:  # IC-LoRA pairs: the reference clip's latents too
            references = vae.normalize_latents(vae.encode(batch["reference_video"]).mean)  # (B, C, F', H'/s, W'/s)
        text, mask = text_encoder.encode(list(batch["caption"]))  # (B, L, D), (B, L)
        for index, key in enumerate(batch["key"]):
            metadata = {**batch["metadata"][index], "fps": float(batch["fps"][index])}
            yield LatentSample(key, latents[index], text[index], mask[index], batch["caption"][index], metadata,
                               None if references is None else references[index])


def remove_stale_shards(directory: Path, prefix: str, written: list[ShardStats]) -> list[Path]:
    """Remove the ``{prefix}-*.tar`` shards (and stats JSON) of an earlier run that this one did not rewrite."""
    kept = {stats.shard for stats in written}
    stale = [path for path in sorted(directory.glob(f"{prefix}-*.tar")) if path.name not in kept]
    for path in stale:
        path.unlink()
        stats_path(path).unlink(missing_ok=True)
    return stale


def run(cfg: DictConfig) -> dict[str, int]:
    L.seed_everything(cfg.seed)
    vae = vae_from_checkpoint(cfg.vae_checkpoint, cfg.use_ema) if cfg.vae_checkpoint else build_vae(cfg.model.vae)
    if cfg.model.vae.get("latent_stats"):
        load_latent_statistics(vae, cfg.model.vae.latent_stats)
    vae.eval()
    record = LatentRecord.of_config(vae, cfg)
    print(f"encoding with {record.describe()}")
    text_encoder = TEXT_ENCODERS.build(cfg.text_encoder.name, **dict(cfg.text_encoder.get("kwargs") or {}))
    datamodule = instantiate(cfg.data, num_workers=0)
    counts = {}
    for split, patterns in (("train", datamodule.train_shards), ("val", datamodule.val_shards)):
        if not patterns:
            continue
        loader = datamodule.make_loader(patterns, resampled=False, random=False)
        directory, prefix = Path(cfg.output) / split, f"latents-{split}"
        stats = write_shards(encode_batches(loader, vae, text_encoder), directory, cfg.samples_per_shard,
                             prefix=prefix, extra_stats={RECORD_KEY: record.to_dict()})
        counts[split] = sum(shard.num_samples for shard in stats)
        stale = remove_stale_shards(directory, prefix, stats)
        if stale:
            print(f"{split}: removed {len(stale)} shard(s) of an earlier run, e.g. {stale[0]}")
        print(f"{split}: {counts[split]} latent samples in {len(stats)} shards in {Path(cfg.output) / split}")
    if datamodule.skipped:
        print(f"skipped samples by reason: {dict(datamodule.skipped)}")
    return counts


@hydra.main(config_path=str(CONFIG_DIR), config_name="precompute", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
