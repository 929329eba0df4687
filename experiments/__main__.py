"""``python -m experiments [NAME ...] [--quick] [--out DIR]`` (``make ablations``): run ablations.

Full mode writes each ablation's ``results.json``, ``results.md`` and plot into
``experiments/<name>/`` and keeps the shared data and training runs in ``outputs/experiments/``
(a rerun reuses finished runs); every run's record and measurements also go to ``experiments/ledger/``
(committed), from which a clone regenerates the results without training what the ledger holds.
``--quick`` trains a few steps per variant (what the test suite runs) and writes everything, its ledger
included, under ``outputs/experiments-quick/`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from experiments.ablations import ABLATIONS
from experiments.report import commit, update_readme, update_summary, write
from experiments.runs import run_seconds
from experiments.trained import ROOT, Settings
from experiments.workspace import Workspace, prepare

LEDGER = ROOT / "ledger"  # make ablations' runs' records and measurements, committed


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"ablations to run (default: all): {', '.join(ABLATIONS)}")
    parser.add_argument("--quick", action="store_true", help="a few steps per variant (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="where results and runs go")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in ABLATIONS]
    if unknown:
        parser.error(f"unknown ablation(s) {unknown}; valid: {', '.join(ABLATIONS)}")
    names = args.names or list(ABLATIONS)
    work_root = args.out or Path("outputs/experiments-quick" if args.quick else "outputs/experiments")
    started = time.perf_counter()
    print(f"code: {commit()} (recorded in every results file this run writes)", flush=True)
    ledger = LEDGER if not (args.quick or args.out) else work_root / "ledger"
    workspace = prepare(work_root / "workspace", args.quick, ledger)
    print(f"workspace ready in {time.perf_counter() - started:.0f} s: {workspace.root}", flush=True)
    written = {}
    for name in names:
        start = time.perf_counter()
        settings = Settings.load(name, args.quick)
        directory = (work_root / name) if (args.quick or args.out) else ROOT / name
        settings.extra["output_dir"] = directory
        result = ABLATIONS[name](workspace, settings)
        seconds = time.perf_counter() - start
        runs = sorted(set(settings.runs))
        extra = {key: value for key, value in settings.extra.items() if key != "output_dir"}
        result.settings = {"quick": args.quick, "variants": settings.variants, "seeds": settings.seeds,
                           "vae_steps": workspace.vae_steps, **extra, "runs": [os.path.relpath(run) for run in runs],
                           "training_minutes": round(sum(training_seconds(workspace, run) for run in runs) / 60, 1)}
        command = f"python -m experiments {name}" + (" --quick" if args.quick else "")
        paths = write(result, directory, command, seconds)
        if directory == ROOT / name:
            update_readme(directory / "README.md", paths["markdown"], name)
        written[name] = paths["markdown"]
        print(f"{name}: {result.outcome} - {result.verdict} ({seconds:.0f} s) -> {paths['markdown']}", flush=True)
    if not (args.quick or args.out):
        update_summary(ROOT / "README.md", [ROOT / name for name in ABLATIONS])
    print(f"all done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return written


def training_seconds(workspace: Workspace, run_dir: Path) -> float:
    """A run's training time: from the ledger's record, else from its directory."""
    record = workspace.ledger.training(run_dir)
    if record is not None and "seconds" in record:
        return float(record["seconds"])
    if not (run_dir / "done.json").exists():
        raise FileNotFoundError(f"{run_dir.name} has no training record in {workspace.ledger.path(run_dir)} and no "
                                f"finished run directory: restore the ledger entry from git or train the run again")
    return run_seconds(run_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
