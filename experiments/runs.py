"""Training runs of the ablations: composed from ``conf/`` plus overrides, trained in this process
through ``ltx.cli.train.run_training``, cached by their configuration (a finished run is not trained
again, so ablations that share a baseline train it once), and their logged curves."""

from __future__ import annotations

import csv
import hashlib
import json
import math
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

DONE = "done.json"


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
    the trained module in the same process, and its result is stored with the run. Returns the stored
    record (overrides, the result of ``after``)."""
    run_dir = spec.run_dir(runs)
    done = run_dir / DONE
    if done.exists():
        return json.loads(done.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run: start it again
    cfg = compose(spec.config, [*spec.overrides, f"run_dir={run_dir}"])
    start = time.perf_counter()
    trainer = run_training(cfg)
    record = {"config": spec.config, "overrides": list(spec.overrides), "steps": trainer.global_step,
              "seconds": time.perf_counter() - start, "after": after(trainer) if after else None}
    done.write_text(json.dumps(record, indent=2))
    return record


def run_seconds(run_dir: Path) -> float:
    """How long a finished run took to train: stored with it, or (runs recorded before the time was
    stored) from its files: the CSV log directory, made as training starts, to the record written at the end."""
    record = json.loads((run_dir / DONE).read_text())
    if "seconds" in record:
        return float(record["seconds"])
    return (run_dir / DONE).stat().st_mtime - (run_dir / "csv").stat().st_mtime


def metric_curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` rows of ``key`` in the run's CSV logs (``csv/metrics.csv`` and, after a resume,
    ``csv/resumed-step<N>/metrics.csv``), in step order."""
    paths = sorted((run_dir / "csv").glob("**/metrics.csv"))
    if not paths:
        raise FileNotFoundError(f"no {run_dir / 'csv' / 'metrics.csv'}: was the run logged with logger=csv?")
    rows = []
    for path in paths:
        with open(path) as handle:
            rows += [(int(row["step"]), float(row[key])) for row in csv.DictReader(handle) if row.get(key)]
    return sorted(rows)


def tail_mean(curve: list[tuple[int, float]], fraction: float = 0.2) -> float:
    """The mean of the last ``fraction`` of a curve's values (a noisy training loss's level at the end)."""
    values = [value for _, value in curve]
    if not values:
        raise ValueError("an empty curve has no level: was the metric logged (trainer.log_every_n_steps)?")
    count = max(1, math.ceil(len(values) * fraction))
    return sum(values[-count:]) / count
