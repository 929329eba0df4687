"""Training-step randomness that depends on (seed, step) and the sample's place in the global batch.

Every rank draws the values for the whole global batch from a generator seeded with (seed, step) and
keeps its own rows. So the noise, timesteps and masks of a step are the same after a resume (nothing to
restore) and the same on 1 or N ranks for the same global batch: a sharded run reproduces a
single-process run's losses, which is how FSDP is tested. Drawing N times more random numbers than
needed costs far less than the model's step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch


class BatchRandomness:
    """Draws for one step. ``rows(draw)`` calls ``draw(global_batch, generator)`` and returns this rank's
    rows (rank r holds samples ``[r * local_batch, (r + 1) * local_batch)``); ``shared(draw)`` returns a
    value every rank draws identically (e.g. how many tokens to keep)."""

    def __init__(self, seed: int, step: int, rank: int, world_size: int, local_batch: int, device: torch.device):
        if not 0 <= rank < world_size or local_batch < 1:
            raise ValueError(f"need 0 <= rank < world_size and local_batch >= 1; got rank={rank}, "
                             f"world_size={world_size}, local_batch={local_batch}")
        self.generator = torch.Generator(device=device).manual_seed(self.mix(seed, step))
        self.device = self.generator.device
        self.start, self.local_batch, self.global_batch = rank * local_batch, local_batch, local_batch * world_size

    @staticmethod
    def mix(*values: int) -> int:
        """A 63-bit seed from integers (stable across processes and Python versions)."""
        digest = hashlib.blake2b(",".join(str(int(v)) for v in values).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") & ((1 << 63) - 1)

    def rows(self, draw: Callable[[int, torch.Generator], torch.Tensor]) -> torch.Tensor:
        values = draw(self.global_batch, self.generator)
        if values.shape[0] != self.global_batch:
            raise ValueError(f"draw returned {values.shape[0]} rows for a global batch of {self.global_batch}")
        return values[self.start:self.start + self.local_batch]

    def shared(self, draw: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
        return draw(self.generator)

    def normal(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal noise of this rank's ``shape`` `(B, ...)`."""
        return self.rows(lambda n, g: torch.randn((n, *shape[1:]), generator=g, device=self.device, dtype=dtype))

    def uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self.rows(lambda n, g: torch.rand((n, *shape[1:]), generator=g, device=self.device))
