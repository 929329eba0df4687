"""The ablations' ledger: each training run's record and measurements in one JSON file per run
(``<ledger>/<run directory name>.json``; ``experiments/ledger/`` for ``make ablations``, committed), so a
clone regenerates every results file from it and trains only what it lacks. Run directories (checkpoints,
logs) are large and stay local; a run's directory name is the hash of its configuration
(``experiments.runs.RunSpec``), the same in every clone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from experiments.provenance import commit
from experiments.runs import checkpoint_steps

MEASUREMENTS_VERSION = 1  # bump when a measurement changes: stored measurements of older versions are redone


@dataclass(frozen=True)
class Ledger:
    root: Path

    def path(self, run_dir: Path) -> Path:
        return self.root / f"{run_dir.name}.json"

    def entry(self, run_dir: Path) -> dict[str, Any]:
        """The run's entry: ``training`` (the record ``experiments.runs.train`` stores when it finishes),
        ``checkpoints`` (their paths by step) and ``measurements`` (name -> version, values, code commit and
        date); empty for a run not in the ledger."""
        path = self.path(run_dir)
        if not path.exists():
            return {"measurements": {}}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"the ledger entry {path} is not valid JSON ({error}): restore it from git "
                             f"(git checkout -- {path}) or delete it to measure the run again") from error

    def training(self, run_dir: Path) -> dict[str, Any] | None:
        return self.entry(run_dir).get("training")

    def record_training(self, run_dir: Path, record: dict[str, Any]) -> None:
        """The run's training record and its step checkpoints (step -> path), which branches resume from."""
        entry = self.entry(run_dir)
        named = {str(step): str(path) for step, path in checkpoint_steps(run_dir).items()}
        if entry.get("training") != record or entry.get("checkpoints") != named:
            entry["training"], entry["checkpoints"] = record, named
            self._write(run_dir, entry)

    def checkpoints(self, run_dir: Path) -> dict[int, str]:
        """The run's step checkpoints (step -> path) when it was trained; empty where not recorded."""
        return {int(step): path for step, path in self.entry(run_dir).get("checkpoints", {}).items()}

    def measurement(self, run_dir: Path, name: str, required: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The stored values of ``name``, or None where absent, of another ``MEASUREMENTS_VERSION`` or
        lacking a ``required`` key (a metric added since)."""
        stored = self.entry(run_dir)["measurements"].get(name)
        if stored is None or stored["version"] != MEASUREMENTS_VERSION or not set(required) <= set(stored["values"]):
            return None
        return stored["values"]

    def record_measurement(self, run_dir: Path, name: str, values: dict[str, Any]) -> None:
        entry = self.entry(run_dir)
        entry["measurements"][name] = {"version": MEASUREMENTS_VERSION, "values": values, "code": commit(),
                                       "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        self._write(run_dir, entry)

    def _write(self, run_dir: Path, entry: dict[str, Any]) -> None:
        path = self.path(run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
        partial.replace(path)  # never a half-written entry
