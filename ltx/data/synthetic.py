"""Synthetic batches for smoke runs, benchmarks and scale-out tests: no files, fixed shapes, and sample
``i`` of a step is the same tensor whatever the number of ranks.

Sample ``i`` of batch ``b`` in epoch ``e`` is drawn from a generator seeded with (seed, e, b, i) and rank
``r`` of ``R`` holds samples ``[r * batch_size, (r + 1) * batch_size)`` of the global batch. So one
process with ``batch_size = R * k`` sees exactly the samples that R processes with ``batch_size = k``
see together, which is how sharded training is compared with a single process. The loaders are
resumable (``state_dict`` / ``load_state_dict``, see ``ltx.data.resume``): a resumed run continues
mid-epoch with the next batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch

from ltx.data.resume import ConsumedBatchCounter, StreamPosition
from ltx.training.randomness import BatchRandomness


class SyntheticLoader:
    """``batches_per_epoch`` batches of ``make_sample(generator)`` items per epoch for one rank."""

    def __init__(self, make_sample: Callable[[torch.Generator], dict[str, Any]], batch_size: int,
                 batches_per_epoch: int, seed: int, rank: int, fixed_epoch: bool = False):
        self.make_sample, self.batch_size, self.batches_per_epoch = make_sample, batch_size, batches_per_epoch
        self.seed, self.rank, self.fixed_epoch = seed, rank, fixed_epoch
        self.position = StreamPosition()

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        first = self.position.start_epoch(self.fixed_epoch, self.batches_per_epoch)
        for index in range(first, self.batches_per_epoch):
            yield self.batch(self.position.epoch, index)

    def batch(self, epoch: int, index: int) -> dict[str, Any]:
        first = self.rank * self.batch_size
        samples = [self.make_sample(torch.Generator().manual_seed(BatchRandomness.mix(self.seed, epoch, index, i)))
                   for i in range(first, first + self.batch_size)]
        return {key: torch.stack([s[key] for s in samples]) if isinstance(samples[0][key], torch.Tensor)
                else [s[key] for s in samples] for key in samples[0]}

    def state_dict(self) -> dict[str, int]:
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position.load_state_dict(state)


class SyntheticDataModule(ConsumedBatchCounter, L.LightningDataModule, ABC):
    """Base: subclasses define ``make_sample``; validation uses ``seed + 1`` and the same batches each time."""

    def __init__(self, batch_size: int, batches_per_epoch: int = 100, val_batches: int = 1, seed: int = 0,
                 fps: float = 24.0, num_workers: int = 0):
        super().__init__()
        if num_workers != 0:
            raise ValueError(f"synthetic batches are made in the training process; set data.num_workers=0 "
                             f"(got {num_workers})")
        for name, value in (("batch_size", batch_size), ("batches_per_epoch", batches_per_epoch)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"data.{name} must be a positive integer, got {value!r}")
        self.batch_size, self.batches_per_epoch, self.val_batches = batch_size, batches_per_epoch, val_batches
        self.seed, self.fps = seed, fps

    @property
    def rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    @abstractmethod
    def make_sample(self, generator: torch.Generator) -> dict[str, Any]:
        """One sample's items, drawn from ``generator`` only."""

    def train_dataloader(self) -> SyntheticLoader:
        self._train_loader = SyntheticLoader(self.make_sample, self.batch_size, self.batches_per_epoch, self.seed,
                                             self.rank)
        return self._train_loader

    def val_dataloader(self) -> SyntheticLoader | list:
        if not self.val_batches:
            return []
        return SyntheticLoader(self.make_sample, self.batch_size, self.val_batches, self.seed + 1, self.rank,
                               fixed_epoch=True)


class SyntheticLatentDataModule(SyntheticDataModule):
    """Latent batches as ``LatentDataModule`` gives them: ``latents`` `(B, C, F', H', W')`, ``text``
    `(B, L, D)`, ``text_mask`` `(B, L)`, ``fps`` `(B,)`, ``caption``."""

    def __init__(self, batch_size: int, latent_channels: int = 128, latent_shape: tuple[int, int, int] = (3, 4, 4),
                 text_length: int = 16, text_dim: int = 4096, **kwargs: Any):
        super().__init__(batch_size, **kwargs)
        self.latent_channels, self.latent_shape = latent_channels, tuple(latent_shape)
        self.text_length, self.text_dim = text_length, text_dim

    def make_sample(self, generator: torch.Generator) -> dict[str, Any]:
        tokens = int(torch.randint(1, self.text_length + 1, (1,), generator=generator))
        return {
            "latents": torch.randn(self.latent_channels, *self.latent_shape, generator=generator),
            "text": torch.randn(self.text_length, self.text_dim, generator=generator),
            "text_mask": torch.arange(self.text_length) < tokens,
            "fps": torch.tensor(float(self.fps)),
            "caption": f"synthetic sample with {tokens} tokens",
        }


class SyntheticVideoDataModule(SyntheticDataModule):
    """Video batches as ``VideoDataModule`` gives them: ``video`` `(B, 3, F, H, W)` in [-1, 1] (smooth
    random patterns drifting over time), ``fps`` `(B,)`, ``caption``."""

    def __init__(self, batch_size: int, frames: int = 9, height: int = 64, width: int = 64, **kwargs: Any):
        super().__init__(batch_size, **kwargs)
        self.frames, self.height, self.width = frames, height, width

    def make_sample(self, generator: torch.Generator) -> dict[str, Any]:
        coarse = torch.randn(1, 3, 2, 5, 5, generator=generator)  # (1, 3, 2, 5, 5): two keyframes of blobs
        video = torch.nn.functional.interpolate(coarse, size=(self.frames, self.height, self.width),
                                                mode="trilinear", align_corners=True)[0]
        return {"video": torch.tanh(video), "fps": torch.tensor(float(self.fps)), "caption": "synthetic video"}
