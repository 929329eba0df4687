"""``python -m benchmarks [--quick] [--out DIR] [--sections ...]`` (``make bench`` / ``make bench-quick``).

Writes ``DIR/<date>.json`` (every row with medians, spreads, ratios, targets) and ``DIR/<date>.md`` (the
tables), and prints the markdown. Sections: gemm (the machine's matmul peak), dit (training step vs
diffusers), vae (encode + decode vs diffusers), sampling (vs diffusers' LTXPipeline), data (loaders vs
the training step's consumption, curation vs pure decoding).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import Row

SECTIONS = ("gemm", "dit", "vae", "sampling", "data")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def run_sections(sections: list[str], quick: bool) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    peaks: dict[str, float] | None = None
    for section in sections:
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{section}")
        if section == "gemm":
            section_rows, peaks = module.run(quick)
        elif section == "dit":
            section_rows = module.run(quick, peaks)
        elif section == "data":
            from benchmarks.consumption import train_samples_per_s

            section_rows = module.run(quick, train_samples_per_s(quick))
        else:
            section_rows = module.run(quick)
        rows.extend(section_rows)
        seconds[section] = time.perf_counter() - start
    return rows, seconds


def _format(values: dict[str, Any] | None) -> str:
    if not values:
        return ""
    parts = []
    if "median_s" in values:
        parts.append(f"{values['median_s']:.4g} s (±{values['spread'] * 50:.0f}%)")
    parts += [f"{value:.4g} {key.replace('_per_s', '/s')}" for key, value in values.items()
              if key.endswith("_per_s") or key.endswith("_MiB")]
    return ", ".join(parts)


def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "", "| section | case | ours | reference | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
        target = "" if row.target is None else f">= {row.target:.2f}x"
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        lines.append(f"| {row.section} | {row.label} | {_format(row.ours)} | {_format(row.reference)} | {ratio} | "
                     f"{target} | {met} |")
        fraction = row.extra.get("fraction_of_gemm_peak")
        if fraction is not None:
            ok = "yes" if fraction >= row.extra["fraction_target"] else "**no**"
            lines.append(f"| {row.section} | {row.label}: share of the GEMM peak | {fraction:.0%} | | | "
                         f">= {row.extra['fraction_target']:.0%} | {ok} |")
    lines += ["", "ratio = reference time / our time (memory: reference peak / our peak); ± is half the "
              "max-min spread over the median."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H%M%S") + ("_quick" if args.quick else "")
    rows, seconds = run_sections(args.sections, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"date": stamp, "quick": args.quick, "machine": machine(), "section_seconds": seconds,
              "rows": [row.as_dict() for row in rows]}
    (args.out / f"{stamp}.json").write_text(json.dumps(result, indent=2))
    table = markdown(rows, f"# Benchmarks {stamp} ({'quick' if args.quick else 'full'}; {machine()})")
    (args.out / f"{stamp}.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {args.out / stamp}.json and .md; sections took " +
          ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()))
    return args.out / f"{stamp}.json"


if __name__ == "__main__":
    main()
