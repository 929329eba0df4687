"""The run report: counts per stage and reason, every rejection as a line, score summaries and
histograms, added up from the per-shard stats (so it covers every task and every rerun)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.runner import iter_shard_stats


def summarize(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    array = np.asarray(values, dtype=np.float64)
    return {"count": len(values), "min": float(array.min()), "median": float(np.median(array)),
            "mean": float(array.mean()), "max": float(array.max())}


def write_report(output: Path, expected_inputs: int | None = None) -> dict[str, Any]:
    """Write ``report.json``, ``rejects.jsonl`` and score histograms under ``output``; return the report."""
    inputs, rejections, clips_per_input, scores = [], [], {}, []
    shards = samples = 0
    for stats in iter_shard_stats(output):
        shards += 1
        samples += stats["num_samples"]
        inputs += stats.get("inputs", [])
        rejections += stats.get("rejections", [])
        clips_per_input.update(stats.get("clips_per_input", {}))
        scores += stats.get("scores", [])
    rejected_sources = {r["source"] for r in rejections}
    unaccounted = [item for item, count in clips_per_input.items() if not count and item not in rejected_sources]
    motion = [s["motion_score"] for s in scores if s.get("motion_score") is not None]
    aesthetic = [s["aesthetic_score"] for s in scores if s.get("aesthetic_score") is not None]
    report = {
        "inputs": len(inputs),
        "expected_inputs": expected_inputs,
        "inputs_with_clips": sum(1 for count in clips_per_input.values() if count),
        "inputs_fully_rejected": sum(1 for count in clips_per_input.values() if not count),
        "unaccounted_inputs": unaccounted,  # must stay empty: every input ends as clips or rejections
        "clips_written": samples,
        "shards": shards,
        "rejections": len(rejections),
        "rejections_by_stage": dict(Counter(r["stage"] for r in rejections)),
        "rejections_by_reason": dict(Counter(f"{r['stage']}:{r['reason']}" for r in rejections)),
        "motion_score": summarize(motion),
        "aesthetic_score": summarize(aesthetic),
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.json").write_text(json.dumps(report, indent=2))
    with open(output / "rejects.jsonl", "w") as handle:
        for rejection in rejections:
            handle.write(json.dumps(rejection) + "\n")
    for name, values in (("motion_score", motion), ("aesthetic_score", aesthetic)):
        write_histogram(values, name, output / f"{name}_histogram.png")
    return report


def write_histogram(values: list[float], name: str, path: Path) -> None:
    """A PNG histogram of ``values`` (an empty plot saying "not scored" when there are none)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3))  # no pyplot: no global figure manager, nothing to close
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.18, top=0.95)  # fixed margins (tight_layout took 0.1 s)
    if values:
        axis.hist(values, bins=min(30, max(5, len(values))))
        axis.set_ylabel("clips")
    else:
        axis.text(0.5, 0.5, "not scored in this run", ha="center", va="center", transform=axis.transAxes)
    axis.set_xlabel(name.replace("_", " "))
    figure.savefig(path, dpi=80)
