"""Checkpoints for long runs: ``resume=auto`` (the newest complete checkpoint of the run directory) and
checkpoint-then-requeue on a pre-emption signal at a step boundary.

Lightning's own SLURM auto-requeue saves from inside the signal handler. A distributed (sharded)
checkpoint is a collective, and a handler runs wherever each rank happens to be, possibly inside
another collective. ``PreemptionCheckpoint`` only records the signal. At the end of the next
training batch all ranks agree on it, save together, rank 0 calls ``scontrol requeue``, and training
stops. The requeued job keeps its SLURM_JOB_ID, so its run directory is the same, and ``resume=auto``
continues from that checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)

DISTRIBUTED_METADATA = (".metadata", "meta.pt")  # torch.distributed.checkpoint index, Lightning's metadata


def is_complete_checkpoint(path: Path) -> bool:
    """A distributed checkpoint directory with both index files, or a whole torch zip file (a save cut
    off by a kill has no central directory)."""
    if path.is_dir():
        return all((path / name).is_file() for name in DISTRIBUTED_METADATA)
    return path.is_file() and zipfile.is_zipfile(path)


def checkpoint_candidates(run_dir: Path) -> list[Path]:
    return [*run_dir.glob("checkpoints/*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The most recently written complete checkpoint of ``run_dir`` (``checkpoints/*.ckpt`` and
    Lightning's ``hpc_ckpt_*.ckpt``), or None."""
    complete = [path for path in checkpoint_candidates(Path(run_dir)) if is_complete_checkpoint(path)]
    if not complete:
        return None

    def written_at(path: Path) -> float:
        return (path / "meta.pt").stat().st_mtime if path.is_dir() else path.stat().st_mtime

    return max(complete, key=written_at)


def resolve_resume(resume: str | None, run_dir: str | Path) -> str | None:
    """``resume`` as a checkpoint path for ``Trainer.fit``: null = start fresh, ``auto`` = the latest
    complete checkpoint of ``run_dir`` (fresh start when there is none), else an existing path."""
    if resume in (None, "", "null"):
        return None
    if resume == "auto":
        found = latest_checkpoint(run_dir)
        log.info("resume=auto: %s", f"resuming from {found}" if found else f"no checkpoint in {run_dir}, starting fresh")
        return str(found) if found else None
    path = Path(str(resume)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"resume={resume!r} does not exist; give a checkpoint path, 'auto' (the latest in "
                                f"the run directory) or null")
    if not is_complete_checkpoint(path):
        raise ValueError(f"resume={resume!r} is not a complete checkpoint (a distributed checkpoint needs "
                         f"{' and '.join(DISTRIBUTED_METADATA)}; a file must be a whole torch zip archive)")
    return str(path)


def checkpoint_step(path: str | Path) -> int:
    """The global step stored in a checkpoint (file or distributed directory)."""
    path = Path(path)
    metadata = torch.load(path / "meta.pt" if path.is_dir() else path, map_location="cpu", weights_only=True)
    return int(metadata["global_step"])


def slurm_job_id() -> str | None:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class PreemptionCheckpoint(L.Callback):
    """On ``signal_name`` (SLURM sends it ``--signal=SIGUSR1@90`` seconds before the time limit), save
    ``dirpath/preempted-step=N.ckpt`` at the next step boundary on all ranks, requeue the SLURM job (when
    in one and ``requeue``) and stop training."""

    def __init__(self, dirpath: str, signal_name: str = "SIGUSR1", requeue: bool = True):
        super().__init__()
        if not hasattr(signal, signal_name):
            raise ValueError(f"unknown signal {signal_name!r}; use e.g. SIGUSR1 or SIGTERM")
        self.dirpath, self.signal_number, self.requeue = Path(dirpath), getattr(signal, signal_name), requeue
        self.received = self.requeue_pending = False
        self._previous: Any = None

    def _record(self, signum: int, frame: Any) -> None:
        self.received = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._previous = signal.signal(self.signal_number, self._record)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        path = self.dirpath / f"preempted-step={trainer.global_step}.ckpt"
        trainer.save_checkpoint(path)
        trainer.strategy.barrier("preemption checkpoint")
        log.warning("pre-emption signal: saved %s at step %d", path, trainer.global_step)
        trainer.should_stop = True
        self.received, self.requeue_pending = False, True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Requeue last, once the step's metrics are logged: SLURM ends the job when it requeues it."""
        if self._previous is not None:
            signal.signal(self.signal_number, self._previous)
            self._previous = None
        if not self.requeue_pending:
            return
        self.requeue_pending = False
        for logger in trainer.loggers:
            logger.save()
        trainer.strategy.barrier("before requeue")
        job = slurm_job_id()
        if self.requeue and job and trainer.is_global_zero:
            if not re.fullmatch(r"[0-9_]+", job):
                raise RuntimeError(f"unexpected SLURM job id {job!r}")
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode:
                log.error("scontrol requeue %s failed: %s", job, result.stderr.strip())
            else:
                log.warning("requeued SLURM job %s", job)


def read_distributed_state_dict(path: str | Path, prefix: str = "state_dict.") -> dict[str, torch.Tensor]:
    """The full (unsharded) tensors under ``prefix`` of a torch.distributed.checkpoint directory, read in
    this one process (no process group); optimizer states are not read unless asked for."""
    from torch.distributed.checkpoint import FileSystemReader, TensorStorageMetadata
    from torch.distributed.checkpoint import load as dcp_load

    reader = FileSystemReader(str(path))
    metadata = reader.read_metadata()
    state = {key: torch.empty(entry.size, dtype=entry.properties.dtype)
             for key, entry in metadata.state_dict_metadata.items()
             if key.startswith(prefix) and isinstance(entry, TensorStorageMetadata)}
    if not state:
        raise ValueError(f"{path} has no tensors under {prefix!r}; is it a Lightning distributed checkpoint?")
    dcp_load(state, storage_reader=reader, no_dist=True)
    return {key.removeprefix(prefix): tensor for key, tensor in state.items()}


def load_full_checkpoint(path: str | Path) -> dict[str, Any]:
    """A stage checkpoint as one dict (``state_dict``, ``hyper_parameters``, ``global_step``, ...), from a
    single file or a distributed checkpoint directory (gathered here; optimizer states left out).
    Loaded with ``weights_only=True``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not is_complete_checkpoint(path):
        raise ValueError(f"{path} is not a complete checkpoint (interrupted while saving?)")
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    checkpoint = torch.load(path / "meta.pt", map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = read_distributed_state_dict(path)
    return checkpoint


def match_shapes(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Reshape tensors whose element count matches ``model``'s but whose shape does not (0-d parameters
    are stored 1-d by sharded runs, see ``parallelize.promote_scalar_parameters``)."""
    reference = model.state_dict()
    return {key: value.reshape(reference[key].shape)
            if key in reference and value.shape != reference[key].shape and value.numel() == reference[key].numel()
            else value for key, value in state_dict.items()}
