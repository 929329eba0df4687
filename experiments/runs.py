"""Training runs of the ablations: composed from ``conf/`` plus overrides, trained in this process
through ``ltx.cli.train.run_training``, cached by their configuration (a finished run is not trained
again, so ablations that share a baseline train it once), and their logged curves."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

from ltx.cli.train import CONFIG_DIR, run_training
from ltx.training.checkpoints import latest_checkpoint

DONE = "done.json"
SEGMENT = "segment.json"  # when the training process now on a run started, and the run's training seconds before it


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides)


@dataclass(frozen=True)
class RunSpec:
    """One training run: a top-level config (``train_vae`` / ``train_dit``) and its overrides."""

    config: str
    overrides: tuple[str, ...]

    @property
    def key(self) -> str:
        text = json.dumps([self.config, sorted(self.overrides)])
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def run_dir(self, runs: Path) -> Path:
        return runs / f"{self.config.removeprefix('train_')}-{self.key}"


def train(spec: RunSpec, runs: Path, after: Callable[[L.Trainer], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train ``spec`` into its run directory unless a finished run is there; ``after(trainer)`` measures
    the trained module in the same process, and its result is stored with the run. An interrupted run
    continues from its latest complete checkpoint (a step checkpoint or ``last.ckpt``), replacing any
    ``resume=`` of the spec (a branch's starting point); one without a checkpoint starts again. Returns the
    stored record (overrides, the result of ``after``, the training ``seconds``, which for a continued run
    include the interrupted processes' time up to its checkpoint; ``resumed_from`` for a continued run)."""
    run_dir = spec.run_dir(runs)
    done = run_dir / DONE
    if done.exists():
        return json.loads(done.read_text())
    overrides = list(spec.overrides)
    own_checkpoint = latest_checkpoint(run_dir) if run_dir.exists() else None
    if own_checkpoint is not None:
        overrides = [override for override in overrides if not override.startswith("resume=")]
        overrides.append(f"resume='{own_checkpoint}'")  # quoted: step checkpoints' names hold '='
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # interrupted before its first checkpoint: start it again
    cfg = compose(spec.config, [*overrides, f"run_dir={run_dir}"])
    before = _seconds_before(run_dir, own_checkpoint) if own_checkpoint is not None else 0.0
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SEGMENT).write_text(json.dumps({"started": time.time(), "seconds_before": before}))
    start = time.perf_counter()
    trainer = run_training(cfg)
    seconds = time.perf_counter() - start
    record = {"config": spec.config, "overrides": list(spec.overrides), "steps": trainer.global_step,
              "seconds": seconds + (before or 0.0), "after": after(trainer) if after else None}
    if own_checkpoint is not None:
        record["resumed_from"] = str(own_checkpoint)
        record["seconds_this_process"] = seconds
        if before is None:  # "seconds" is then this process's part only
            record["seconds_before_resume"] = "not recorded"
    done.write_text(json.dumps(record, indent=2))
    return record


def checkpoint_steps(run_dir: Path) -> dict[int, Path]:
    """The run's step checkpoints (``...step=N.ckpt``) by step."""
    found = {}
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        match = re.search(r"step=(\d+)", path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def _seconds_before(run_dir: Path, checkpoint: Path) -> float | None:
    """The training seconds a run had spent up to ``checkpoint``, the one it continues from: those before
    the interrupted process plus that process's time from its start to the checkpoint's writing (the steps
    it trained past the checkpoint are lost and not counted). A run begun before ``segment.json`` was
    written counts from its CSV log, made as training starts (a branch's is ``csv/resumed-step<N>/``); None
    where that cannot be known (more than one log: it had already been resumed)."""
    segment = run_dir / SEGMENT
    if segment.exists():
        previous = json.loads(segment.read_text())
    elif len(logs := list((run_dir / "csv").glob("**/hparams.yaml"))) == 1:  # one process so far (a branch's
        previous = {"started": logs[0].stat().st_mtime, "seconds_before": 0.0}  # log is csv/resumed-step<N>/)
    else:
        return None
    if previous["seconds_before"] is None:
        return None
    return previous["seconds_before"] + max(0.0, checkpoint.stat().st_mtime - previous["started"])


def run_seconds(run_dir: Path) -> float:
    """How long a finished run took to train: stored with it, or (runs recorded before the time was
    stored) from its files: the CSV log directory, made as training starts, to the record written at the end."""
    record = json.loads((run_dir / DONE).read_text())
    if "seconds" in record:
        return float(record["seconds"])
    return (run_dir / DONE).stat().st_mtime - (run_dir / "csv").stat().st_mtime


def metric_curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` rows of ``key`` in the run's CSV logs (``csv/metrics.csv`` and, after a resume,
    ``csv/resumed-step<N>/metrics.csv``), in step order. A resume from step N supersedes what earlier logs
    hold from step N on (an interrupted run logged past its last checkpoint)."""
    paths = sorted((run_dir / "csv").glob("**/metrics.csv"), key=_resumed_step)
    if not paths:
        raise FileNotFoundError(f"no {run_dir / 'csv' / 'metrics.csv'}: was the run logged with logger=csv?")
    rows: list[tuple[int, float]] = []
    for path in paths:
        resumed = _resumed_step(path)
        rows = [row for row in rows if row[0] < resumed]
        with open(path) as handle:
            rows += [(int(row["step"]), float(row[key])) for row in csv.DictReader(handle) if row.get(key)]
    return sorted(rows)


def _resumed_step(metrics: Path) -> int:
    """N of a ``resumed-step<N>/metrics.csv``; 0 for a run's first log."""
    match = re.fullmatch(r"resumed-step(\d+)", metrics.parent.name)
    return int(match.group(1)) if match else 0


def tail_mean(curve: list[tuple[int, float]], fraction: float = 0.2) -> float:
    """The mean of the last ``fraction`` of a curve's values (a noisy training loss's level at the end)."""
    values = [value for _, value in curve]
    if not values:
        raise ValueError("an empty curve has no level: was the metric logged (trainer.log_every_n_steps)?")
    count = max(1, math.ceil(len(values) * fraction))
    return sum(values[-count:]) / count
