"""Where a training data stream stands, for resuming mid-epoch.

Lightning fetches one batch ahead of the step it trains, so counting batches as a loader yields them
would put a checkpoint one batch ahead. Loaders therefore count batches as training *consumes* them:
``ConsumedBatchCounter`` (a data-module mixin) increments the train loader's ``position`` in
``on_before_batch_transfer``, which Lightning calls for the batch it is about to train on. Lightning
saves the loader's ``state_dict`` in checkpoints and gives it back through ``load_state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StreamPosition:
    """The epoch being read and how many of its batches training has consumed."""

    epoch: int = -1
    consumed: int = 0
    resume_skip: int | None = None  # set by load_state_dict: batches of ``epoch`` to skip on the next pass

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.resume_skip = int(state["epoch"]), int(state["consumed"])

    def start_epoch(self, fixed_epoch: bool, length: int | None) -> int:
        """Begin a pass; returns how many batches to skip (a resumed epoch's consumed batches). A checkpoint
        taken after an epoch's last batch resumes with the next epoch."""
        skip, self.resume_skip = self.resume_skip, None
        if skip is None or (length is not None and skip >= length):
            self.epoch = 0 if fixed_epoch else self.epoch + 1
            skip = 0
        self.consumed = skip
        return skip


class ConsumedBatchCounter:
    """Mixin for LightningDataModules whose train loader has a ``position`` (a ``StreamPosition``)."""

    _train_loader: Any = None

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if self._train_loader is not None and trainer is not None and trainer.training:
            self._train_loader.position.consumed += 1
        return batch
