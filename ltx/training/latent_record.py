"""What made a set of latent shards: the VAE and the latent statistics, by path and by content fingerprint.

``ltx.cli.precompute`` writes a ``LatentRecord`` into every latent shard's stats JSON (``latent_record``);
DiT training refuses shards whose record differs from its own VAE and statistics (``check_latent_shards``)
and sampling refuses a VAE or statistics other than those the DiT was trained with. Only fingerprints are
compared (a moved or renamed file is no mismatch); the paths make the error messages actionable.

Shards without a record (written before records existed, or copied without their ``.stats.json``) cannot
be checked: when none of a split has one, training warns and goes on; a split where some shards have a
record and others not mixes precompute runs and is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ltx.data.datamodule import expand_shards
from ltx.data.shards import stats_path
from ltx.models.vae import VideoAutoencoder

log = logging.getLogger(__name__)
RECORD_KEY = "latent_record"  # the key of a latent shard's stats JSON
STATISTICS = ("latents_mean", "latents_std")  # the VAE buffers ``normalize_latents`` uses


def tensor_fingerprint(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors`` in name order (16 hex digits)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def statistics_fingerprint(mean: torch.Tensor, std: torch.Tensor) -> str:
    """The fingerprint of per-channel latent statistics, as a VAE holds them (float32)."""
    return tensor_fingerprint({"latents_mean": mean.float(), "latents_std": std.float()})


def vae_weights_fingerprint(vae: VideoAutoencoder) -> str:
    """The fingerprint of a VAE's weights and buffers, its latent statistics left out."""
    return tensor_fingerprint({k: v for k, v in vae.state_dict().items() if k not in STATISTICS})


def _absolute(path: str | Path | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


@dataclass(frozen=True)
class LatentRecord:
    """The VAE (a VAE-stage checkpoint, else ``model.vae.pretrained`` weights, else neither: a random
    initialisation) and the latent statistics file (none: mean 0, std 1) that made a set of latents."""

    vae_checkpoint: str | None
    vae_pretrained: str | None
    vae_fingerprint: str
    latent_stats: str | None
    latent_stats_fingerprint: str

    @classmethod
    def of(cls, vae: VideoAutoencoder, vae_checkpoint: str | Path | None = None,
           vae_pretrained: str | Path | None = None, latent_stats: str | Path | None = None) -> LatentRecord:
        """The record of ``vae`` (its weights and its statistics buffers) and where they came from."""
        return cls(_absolute(vae_checkpoint), None if vae_checkpoint else _absolute(vae_pretrained),
                   vae_weights_fingerprint(vae), _absolute(latent_stats),
                   statistics_fingerprint(vae.latents_mean, vae.latents_std))

    @classmethod
    def of_config(cls, vae: VideoAutoencoder, cfg: Mapping[str, Any]) -> LatentRecord:
        """The record of ``vae`` built from a run config (``vae_checkpoint``, ``model.vae``)."""
        model = cfg["model"]["vae"]
        return cls.of(vae, cfg.get("vae_checkpoint"), model.get("pretrained"), model.get("latent_stats"))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LatentRecord:
        return cls(**{name: values.get(name) for name in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def overrides(self) -> str:
        """The Hydra overrides (of precompute and train_dit) that select this VAE and these statistics."""
        vae = f"vae_checkpoint={self.vae_checkpoint}" if self.vae_checkpoint else \
            f"vae_checkpoint=null model.vae.pretrained={self.vae_pretrained or 'null'}"
        return f"{vae} model.vae.latent_stats={self.latent_stats or 'null'}"

    def describe(self) -> str:
        path = self.vae_checkpoint or self.vae_pretrained
        vae = f"VAE {path}" if path else "a randomly initialised VAE (no checkpoint or weights)"
        stats = self.latent_stats or "none (mean 0, std 1)"
        return f"{vae} (weights {self.vae_fingerprint}), latent statistics {stats} ({self.latent_stats_fingerprint})"

    def differences(self, other: LatentRecord) -> list[str]:
        """What differs from ``other``: "VAE weights" and / or "latent statistics"."""
        return [name for name, differs in (("VAE weights", self.vae_fingerprint != other.vae_fingerprint),
                                           ("latent statistics",
                                            self.latent_stats_fingerprint != other.latent_stats_fingerprint)) if differs]


def read_shard_records(patterns: str | Sequence[str]) -> tuple[dict[str, LatentRecord | None], list[str]]:
    """The record of every local shard of ``patterns`` (None: its stats JSON has none) and the remote
    shards (URLs), whose stats JSON is not read."""
    records: dict[str, LatentRecord | None] = {}
    remote = []
    for shard in expand_shards(patterns):
        if "://" in shard or shard.startswith("pipe:"):
            remote.append(shard)
            continue
        stats = stats_path(Path(shard))
        values = json.loads(stats.read_text()).get(RECORD_KEY) if stats.exists() else None
        records[shard] = LatentRecord.from_dict(values) if values else None
    return records, remote


def check_latent_shards(patterns: str | Sequence[str], expected: LatentRecord, split: str = "train") -> None:
    """Refuse latent shards made by another VAE or other latent statistics than ``expected`` (ValueError
    naming the command that fixes it); warn about shards that cannot be checked (module docstring)."""
    records, remote = read_shard_records(patterns)
    if remote:
        log.warning("%d remote %s latent shard(s) (e.g. %s) not checked against this run's VAE and latent "
                    "statistics: their stats JSON is not read", len(remote), split, remote[0])
    unrecorded = [shard for shard, record in records.items() if record is None]
    fix = f"python -m ltx.cli.precompute {expected.overrides()} output=DIR [your data.* overrides]"
    if unrecorded and len(unrecorded) == len(records):
        log.warning("the %s latent shards (e.g. %s) hold no record of the VAE and latent statistics that made "
                    "them (written before records existed?): they cannot be checked against this run's %s. "
                    "Recompute them to record it: `%s`", split, unrecorded[0], expected.describe(), fix)
        return
    if unrecorded:
        raise ValueError(f"{len(unrecorded)} of {len(records)} {split} latent shards (e.g. {unrecorded[0]}) hold no "
                         f"record of the VAE that made them while the others do: shards of different precompute "
                         f"runs are mixed. Recompute them (precompute replaces the shards an earlier run left in its "
                         f"output): `{fix}` (or `make latents ARGS=\"...\"`)")
    mismatched = {shard: record for shard, record in records.items() if record.differences(expected)}
    if mismatched:
        shard, made = next(iter(mismatched.items()))
        output = Path(shard).parent.parent  # precompute writes OUTPUT/train and OUTPUT/val
        raise ValueError(
            f"{len(mismatched)} of {len(records)} {split} latent shards (e.g. {shard}) were made with other "
            f"{' and '.join(made.differences(expected))} than this run's:\n"
            f"  the shards: {made.describe()}\n  this run:   {expected.describe()}\n{_fix(made, expected, output)}")


def _fix(made: LatentRecord, expected: LatentRecord, output: Path) -> str:
    """The commands that fix latents of ``made`` meeting a run of ``expected``."""
    vae_differs = "VAE weights" in made.differences(expected)
    if vae_differs and not (expected.vae_checkpoint or expected.vae_pretrained):
        fixes = ["This run's VAE is randomly initialised, which no precompute reproduces: give both commands a "
                 "trained one (a VAE-stage checkpoint from `make train-vae`), `python -m ltx.cli.precompute "
                 f"vae_checkpoint=VAE_CHECKPOINT model.vae.latent_stats={expected.latent_stats or 'null'} "
                 f"output={output}`, then train with the same two overrides"]
    else:
        fixes = [f"Recompute the latents with this run's VAE and statistics: `python -m ltx.cli.precompute "
                 f"{expected.overrides()} output={output} [your data.* overrides]` (or `make latents ARGS=\"...\"`)"]
    if not vae_differs or made.vae_checkpoint or made.vae_pretrained:
        fixes.append(f"train with the shards' ones: {made.overrides()}")
    return "; or ".join(fixes)
