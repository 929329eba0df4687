"""LightningDataModule over WebDataset shards of the shard schema, bucketed by (frames, height, width)."""

from __future__ import annotations

import glob
import logging
import math
import os
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import lightning as L
import webdataset as wds
from braceexpand import braceexpand

from ltx.data.buckets import parse_buckets
from ltx.data.pipeline import AssignBuckets, BatchByBucket, DecodeSamples, MetadataFilter
from ltx.data.resume import ConsumedBatchCounter, StreamPosition

log = logging.getLogger(__name__)


def expand_shards(patterns: str | Sequence[str]) -> list[str]:
    """Shard paths from a directory, glob, brace pattern (``shard-{000..009}.tar``) or list of them.

    Local patterns must match existing files (else ValueError); URLs (``scheme://``, ``pipe:``) pass
    through unchanged.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    shards: list[str] = []
    for pattern in patterns:
        pattern = os.path.expanduser(str(pattern))
        if "://" in pattern or pattern.startswith("pipe:"):
            shards.extend(braceexpand(pattern))
            continue
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "*.tar")
        matched = sorted(path for part in braceexpand(pattern) for path in glob.glob(part))
        if not matched:
            raise ValueError(f"no shards match {pattern!r}; run `make data` or point data.train_shards at your shards")
        shards.extend(matched)
    return list(dict.fromkeys(shards))


def _as_is(batch: dict[str, Any]) -> dict[str, Any]:
    """Batches are collated by the pipeline; the DataLoader must not convert them again."""
    return batch


def _rank_worker_seed(rank: int) -> int:
    _, _, worker, _ = wds.utils.pytorch_worker_info()
    return rank * 100_003 + worker


class SplitByRank:
    """Keep every ``world_size``-th shard starting at ``rank`` (picklable, explicit rank)."""

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size

    def __call__(self, source: Iterator[Any]) -> Iterator[Any]:
        for index, item in enumerate(source):
            if index % self.world_size == self.rank:
                yield item


class WeightedResampledShards(wds.ResampledShards):
    """``wds.ResampledShards`` over groups of shards: each draw picks a group with probability proportional to
    its weight, then one of its shards uniformly. Seeded like its parent with ``deterministic=True``: a
    function of (worker seed, epoch, seed)."""

    def __init__(self, groups: Sequence[Sequence[str]], weights: Sequence[float], seed: int, worker_seed: Any):
        super().__init__([url for group in groups for url in group], seed=seed, worker_seed=worker_seed,
                         deterministic=True)
        self.groups, self.weights = [list(group) for group in groups], [float(weight) for weight in weights]

    def __iter__(self) -> Iterator[dict[str, str]]:
        self.epoch += 1
        self.rng = random.Random(wds.utils.make_seed(self.worker_seed(), self.epoch, self.seed))
        indices = range(len(self.groups))
        for _ in range(self.nshards):
            group = self.groups[self.rng.choices(indices, weights=self.weights)[0]]
            yield {"url": group[self.rng.randrange(len(group))]}


class AccountedLoader:
    """Iterates a WebLoader, sets the epoch on its seeded stages, and adds up skipped-sample counts.

    Resumable (Lightning stores ``state_dict`` in checkpoints): the stream is a function of (seed, epoch,
    rank, worker), so a resumed run replays its epoch and skips the batches already trained on, then
    continues with exactly the batches an uninterrupted run would have seen (see ``ltx.data.resume``).
    An exact single pass (no length) that was checkpointed after its last batch replays an empty epoch
    first.
    """

    def __init__(self, loader: wds.WebLoader, pipeline: wds.DataPipeline, length: int | None, skipped: Counter,
                 fixed_epoch: bool = False):
        self.loader, self.pipeline, self.length, self.skipped = loader, pipeline, length, skipped
        self.fixed_epoch = fixed_epoch  # validation: the same windows and crops every pass
        self.position = StreamPosition()

    @property
    def epoch(self) -> int:
        return self.position.epoch

    def state_dict(self) -> dict[str, int]:
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position.load_state_dict(state)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        skip = self.position.start_epoch(self.fixed_epoch, self.length)
        if skip:
            log.info("resuming epoch %d: skipping the %d batches already trained on", self.epoch, skip)
        for stage in self.pipeline.pipeline:
            if isinstance(stage, wds.ResampledShards | wds.detshuffle):
                stage.epoch = self.epoch - 1  # their __iter__ (in the worker) increments first
            elif hasattr(stage, "epoch"):
                stage.epoch = self.epoch
        skipped_before = sum(self.skipped.values())
        for batch in self.loader:
            stats = batch.pop("stats")
            if batch.get("stats_only"):
                if not skip:
                    self.skipped.update(stats)
                continue
            if skip:  # replayed, already trained on (and counted) before the resume
                skip -= 1
                continue
            self.skipped.update(stats)
            yield batch
        newly_skipped = sum(self.skipped.values()) - skipped_before
        if newly_skipped:
            log.warning("epoch %d: %d samples skipped so far by reason: %s", self.epoch, newly_skipped, dict(self.skipped))

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("an exact single pass over shards has no length known in advance")
        return self.length


class ShardDataModule(ConsumedBatchCounter, L.LightningDataModule, ABC):
    """Batches from WebDataset shards, split by rank and worker; subclasses say how samples become batch
    items (``sample_stages``).

    Two ways to read shards:
      - ``resampled=True`` (training): each worker draws shards with replacement, seeded by (seed,
        epoch, rank, worker); each rank yields exactly ``batches_per_epoch`` batches, so no rank waits
        for another at the end of an epoch, whatever the shard sizes. ``shard_weights`` (one per entry of
        ``train_shards``) mixes sources: each draw picks an entry by weight, then one of its shards (so
        with shards of equal size, an entry's weight is its share of the samples).
      - ``resampled=False`` (evaluation, accounting): shards are shuffled per epoch with a seed shared by
        all ranks, split by rank, then by worker: every shard is read exactly once per epoch.
    """

    def __init__(
        self,
        train_shards: str | Sequence[str],
        batch_size: int,
        val_shards: str | Sequence[str] | None = None,
        resampled: bool = True,
        batches_per_epoch: int = 100,
        shuffle_shards: bool = True,
        shuffle_buffer: int = 64,
        num_workers: int = 2,
        drop_last: bool = True,
        max_consecutive_failures: int = 200,
        max_consecutive_skips: int = 10_000,
        pin_memory: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        shard_weights: Sequence[float] | None = None,
    ):
        super().__init__()
        self.shard_weights = self._check_shard_weights(train_shards, shard_weights, resampled)
        for name, value in (("batch_size", batch_size), ("batches_per_epoch", batches_per_epoch),
                            ("max_consecutive_failures", max_consecutive_failures),
                            ("max_consecutive_skips", max_consecutive_skips)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"data.{name} must be a positive integer, got {value!r}")
        if num_workers < 0 or shuffle_buffer < 0:
            raise ValueError("data.num_workers and data.shuffle_buffer must be >= 0")
        self.train_shards, self.val_shards = train_shards, val_shards
        self.batch_size, self.resampled = batch_size, resampled
        self.batches_per_epoch, self.shuffle_shards, self.shuffle_buffer = batches_per_epoch, shuffle_shards, shuffle_buffer
        self.num_workers, self.drop_last = num_workers, drop_last
        self.max_consecutive_failures, self.max_consecutive_skips = max_consecutive_failures, max_consecutive_skips
        self.pin_memory, self.seed = pin_memory, seed
        self._rank, self._world_size = rank, world_size
        self.skipped: Counter[str] = Counter()

    @staticmethod
    def _check_shard_weights(train_shards: str | Sequence[str], weights: Sequence[float] | None,
                             resampled: bool) -> list[float] | None:
        if weights is None:
            return None
        entries = 1 if isinstance(train_shards, str) else len(train_shards)
        weights = [float(weight) for weight in weights]
        if len(weights) != entries:
            raise ValueError(f"data.shard_weights has {len(weights)} weight(s) for {entries} data.train_shards "
                             f"entr{'y' if entries == 1 else 'ies'}: give one weight per entry, or null")
        if not all(math.isfinite(weight) and weight >= 0 for weight in weights) or not sum(weights) > 0:
            raise ValueError(f"data.shard_weights must be finite, >= 0 and not all 0, got {weights}")
        if not resampled:
            raise ValueError("data.shard_weights needs data.resampled=true: an exact pass reads every shard once")
        return weights

    @abstractmethod
    def sample_stages(self, random: bool, rank: int) -> list[Any]:
        """Stages turning raw tar samples into batch items (or ``Skip``s), before bucket batching."""

    # ranks come from the trainer when there is one, else from the constructor, else single-process
    @property
    def rank(self) -> int:
        if self._rank is not None:
            return self._rank
        return self.trainer.global_rank if self.trainer is not None else 0

    @property
    def world_size(self) -> int:
        if self._world_size is not None:
            return self._world_size
        return self.trainer.world_size if self.trainer is not None else 1

    def train_dataloader(self) -> AccountedLoader:
        self._train_loader = self.make_loader(self.train_shards, resampled=self.resampled, random=True,
                                              weights=self.shard_weights)
        return self._train_loader

    def val_dataloader(self) -> AccountedLoader | list:
        if self.val_shards is None:
            return []
        return self.make_loader(self.val_shards, resampled=False, random=False)

    def make_loader(self, patterns: str | Sequence[str], resampled: bool, random: bool,
                    weights: Sequence[float] | None = None) -> AccountedLoader:
        """A loader over ``patterns`` for this rank; see the class docstring for the two modes. ``weights``
        (resampled only): one per entry of ``patterns``, each entry's share of the shard draws."""
        groups = [expand_shards(pattern) for pattern in ([patterns] if isinstance(patterns, str) else patterns)]
        shards = list(dict.fromkeys(shard for group in groups for shard in group))
        rank, world_size, workers = self.rank, self.world_size, max(1, self.num_workers)
        if not resampled and len(shards) < world_size * workers:
            raise ValueError(
                f"{len(shards)} shard(s) for {world_size} rank(s) x {workers} worker(s): an exact pass needs at "
                f"least one shard per worker; write more, smaller shards or lower data.num_workers"
            )
        source = self._source(groups if weights is not None else [shards], weights, resampled, random, rank, world_size)
        pipeline = wds.DataPipeline(*source, *self._stages(random, rank, resampled))
        length = None
        if resampled:
            per_worker = math.ceil(self.batches_per_epoch / workers)
            pipeline = pipeline.with_epoch(nbatches=per_worker)
            length = per_worker * workers
        loader = wds.WebLoader(pipeline, batch_size=None, collate_fn=_as_is, num_workers=self.num_workers,
                               pin_memory=self.pin_memory)
        return AccountedLoader(loader, pipeline, length, self.skipped, fixed_epoch=not random)

    def _source(self, groups: list[list[str]], weights: Sequence[float] | None, resampled: bool, random: bool,
                rank: int, world_size: int) -> list[Any]:
        """Where shard urls come from: ``groups`` of shards (one group unless ``weights`` mixes them)."""
        worker_seed = partial(_rank_worker_seed, rank)
        if weights is not None:
            return [WeightedResampledShards(groups, weights, self.seed, worker_seed)]
        (shards,) = groups
        if resampled:
            return [wds.ResampledShards(shards, seed=self.seed, worker_seed=worker_seed, deterministic=True)]
        source: list[Any] = [wds.SimpleShardList(shards)]
        if random and self.shuffle_shards:
            source.append(wds.detshuffle(bufsize=len(shards), initial=len(shards), seed=self.seed))
        return [*source, SplitByRank(rank, world_size), wds.split_by_worker]

    def _stages(self, random: bool, rank: int, resampled: bool) -> list[Any]:
        stages: list[Any] = [wds.tarfile_to_samples(handler=wds.warn_and_continue)]
        if random and self.shuffle_buffer > 1:
            stages.append(wds.detshuffle(self.shuffle_buffer, initial=self.shuffle_buffer // 2, seed=wds.utils.make_seed(self.seed, rank)))
        return [*stages, *self.sample_stages(random, rank),
                BatchByBucket(self.batch_size, self.drop_last and resampled, self.max_consecutive_failures,
                              self.max_consecutive_skips)]


class VideoDataModule(ShardDataModule):
    """Bucketed video + image batches from shards of the shard schema (data_pipeline/README.md).

    Batches are dicts: ``video`` `(B, 3, F, H, W)` in [-1, 1], ``fps`` `(B,)`, ``caption``, ``key``,
    ``url``, ``metadata`` (lists), ``bucket`` (F, H, W). Every batch holds one bucket. See
    ``ShardDataModule`` for the two reading modes. All shapes and counts are checked here, at
    start-up: bucket frames of the form 8k+1, sizes multiples of 32, positive sizes and counts.
    """

    def __init__(self, train_shards: str | Sequence[str], buckets: Sequence[Sequence[int]], batch_size: int,
                 target_fps: float = 24.0, random_crop: bool = True, aspect_tolerance: float = 0.15,
                 filters: Mapping[str, Any] | None = None, decode_cache_mb: float = 0.0, reference_downscale: int = 1,
                 **shard_options: Any):
        super().__init__(train_shards, batch_size, **shard_options)
        if not decode_cache_mb >= 0:
            raise ValueError(f"data.decode_cache_mb must be >= 0 (0 = decode every use), got {decode_cache_mb!r}")
        self.decode_cache_mb = float(decode_cache_mb)
        self.buckets = parse_buckets(buckets)
        if not target_fps > 0:
            raise ValueError(f"data.target_fps must be positive, got {target_fps!r}")
        try:
            self.metadata_filter = MetadataFilter(**dict(filters or {}))
        except TypeError as error:
            valid = ", ".join(MetadataFilter.__dataclass_fields__)
            raise ValueError(f"data.filters: {error}; valid filters: {valid}") from None
        self.target_fps, self.random_crop, self.aspect_tolerance = float(target_fps), random_crop, aspect_tolerance
        if not isinstance(reference_downscale, int) or reference_downscale < 1 or any(
                bucket.height % (32 * reference_downscale) or bucket.width % (32 * reference_downscale)
                for bucket in self.buckets):
            raise ValueError(f"data.reference_downscale={reference_downscale!r}: an int >= 1 such that every bucket's "
                             f"height and width stay multiples of 32 after dividing by it")
        self.reference_downscale = reference_downscale

    def sample_stages(self, random: bool, rank: int) -> list[Any]:
        return [
            AssignBuckets(self.buckets, self.target_fps, self.metadata_filter, self.aspect_tolerance, self.seed, rank),
            DecodeSamples(self.target_fps, random and self.random_crop, self.seed, rank, self.decode_cache_mb,
                          self.reference_downscale),
        ]
