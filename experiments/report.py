"""An ablation's files: ``results.json`` (everything measured, per seed), ``results.md`` (the baseline
against the demo's targets, the table, the comparisons and the verdict) and ``<name>.png`` (its curves,
one panel each); and the README blocks regenerated from them (each ablation's results block, the summary
table of experiments/README.md with commit, date and hardware)."""

from __future__ import annotations

import dataclasses
import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from experiments.ablations import Result  # noqa: E402
from experiments.provenance import commit  # noqa: E402
from experiments.verdict import MIN_SEEDS  # noqa: E402


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    return (f"{cpu}, {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
            f"torch {torch.__version__.split('+')[0]}, {'CUDA' if torch.cuda.is_available() else 'CPU only'}")


def provenance() -> dict[str, str]:
    return {"commit": commit(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "hardware": hardware()}


def baseline_markdown(baseline: dict[str, Any]) -> list[str]:
    if not baseline:
        return []
    lines = ["| baseline (per seed) | mean | min-max | target | met by every seed |", "|---|---|---|---|---|"]
    for row in baseline["rows"].values():
        lines.append(f"| {row['label']} | {row['mean']:.4f} | {row['min']:.4f}-{row['max']:.4f} | >= {row['target']} | "
                     f"{'yes' if row['met'] else '**no**'} |")
    verdict = "meets" if baseline["all_met"] else "does **not** meet"
    return [f"The baseline {verdict} the demo's targets:", "", *lines, ""]


def cell(text: str) -> str:
    """``text`` as one markdown table cell (a bare ``|`` would split it)."""
    return text.replace("|", "\\|")


def markdown(result: Result, command: str, seconds: float, origin: dict[str, str]) -> str:
    rows = result.rows()
    lines = [f"# {result.name}: results", "", f"Claim: {result.claim}", "",
             f"Command: `{command}`; commit {origin['commit']}, {origin['date']}; hardware: {origin['hardware']}; "
             f"training time of its runs {result.settings.get('training_minutes', 'n/a')} min (runs are cached by "
             f"configuration: one shared with another ablation is trained once); this invocation {seconds / 60:.1f} min.",
             "", *baseline_markdown(result.baseline),
             "Mean ± standard deviation (min to max) over seeds:", "",
             "| variant | " + " | ".join(cell(column.label) for column in result.columns) + " |",
             "|---" * (len(result.columns) + 1) + "|"]
    for variant, row in rows.items():
        cells = [row[column.key].format(column.digits) if row[column.key] else "n/a" for column in result.columns]
        lines.append(f"| {cell(variant)} | " + " | ".join(cells) + " |")
    lines += ["", f"Seed-paired comparisons (the rule: experiments/README.md; fewer than {MIN_SEEDS} seeds is "
              "inconclusive):", "", "| | comparison | paired differences | paper's sign | outcome |", "|---|---|---|---|---|"]
    for comparison in result.comparisons:
        differences = ", ".join(f"{value:+.4g}" for value in comparison.differences)
        lines.append(f"| {'primary' if comparison.primary else 'secondary'} | {cell(comparison.metric)}: "
                     f"{cell(comparison.ours)} vs {cell(comparison.other)} ({comparison.better} is better) | {differences} | {comparison.favourable} of "
                     f"{len(comparison.seeds)} | {comparison.outcome}"
                     f"{' (spread > effect: more seeds needed)' if comparison.spread_exceeds_effect else ''} |")
    lines += ["", f"Verdict: **{result.outcome}**. {result.verdict}.", ""]
    lines += [f"- {note}" for note in result.notes]
    lines += [f"![{caption}]({name})" for name, caption in result.figures.items()]
    lines += ["", f"Settings: {json.dumps(result.settings)}", ""]
    return "\n".join(lines)


def plot(result: Result, path: Path) -> None:
    panels = list(result.curves.items())
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, (title, curves) in zip(axes[0], panels):
        for label, points in curves.items():
            if points:
                xs, ys = zip(*points)
                axis.plot(xs, ys, label=label, marker="o" if len(points) < 12 else None)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(result.name)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def record(result: Result, command: str, seconds: float, origin: dict[str, str]) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data["columns"] = [dataclasses.asdict(column) for column in result.columns]
    data["comparisons"] = [comparison.to_dict() for comparison in result.comparisons]
    data["per_seed"] = {variant: {metric: {str(seed): value for seed, value in values.items()}
                                  for metric, values in metrics.items()} for variant, metrics in result.per_seed.items()}
    data["rows"] = {variant: {key: (spread.to_dict() if spread else None) for key, spread in row.items()}
                    for variant, row in result.rows().items()}
    return {**data, "outcome": result.outcome, "verdict": result.verdict, "command": command, "seconds": seconds,
            **origin}


def write(result: Result, directory: Path, command: str, seconds: float) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    origin = provenance()
    paths = {"json": directory / "results.json", "markdown": directory / "results.md",
             "plot": directory / f"{result.name}.png"}
    paths["json"].write_text(json.dumps(record(result, command, seconds, origin), indent=1))
    paths["markdown"].write_text(markdown(result, command, seconds, origin))
    plot(result, paths["plot"])
    return paths


RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(readme: Path, results_md: Path, name: str) -> bool:
    """Replace the block between the results markers of an ablation's README with its ``results.md`` (less
    the title) and the plot; False when the README has no such block."""
    if not readme.exists():
        return False
    text = readme.read_text()
    if RESULTS_START not in text or RESULTS_END not in text:
        return False
    body = results_md.read_text().split("\n", 2)[2]
    block = f"{RESULTS_START}\n{body}\n![{name}]({name}.png)\n{RESULTS_END}"
    head, rest = text.split(RESULTS_START, 1)
    readme.write_text(head + block + rest.split(RESULTS_END, 1)[1])
    return True


SUMMARY_START, SUMMARY_END = "<!-- summary:start -->", "<!-- summary:end -->"


def summary_line(directory: Path, data: dict[str, Any]) -> str:
    primary = "; ".join(
        f"{c['metric']} {c['ours']} vs {c['other']}: paired differences "
        f"{', '.join(f'{value:+.3g}' for value in c['differences'])} ({c['outcome']})"
        for c in data["comparisons"] if c["primary"])
    baseline = data.get("baseline") or {}
    met = "n/a" if not baseline else ("yes" if baseline["all_met"] else "no")
    return (f"| [{data['name']}]({directory.name}/README.md) | **{data['outcome']}** | {primary} | {met} | "
            f"{data['settings'].get('training_minutes', 'n/a')} min | {data['commit']}, {data['date']} |")


def update_summary(readme: Path, results_dirs: list[Path]) -> bool:
    """One line per ablation with a ``results.json`` in ``results_dirs``, regenerated from those files:
    verdict, primary comparisons, whether the baseline meets the demo's targets, training time, provenance."""
    if not readme.exists() or SUMMARY_START not in readme.read_text():
        return False
    lines = ["| ablation | verdict | primary comparisons (ours - other, per seed) | baseline meets the demo targets | "
             "training time | commit, date |", "|---|---|---|---|---|---|"]
    hardware_seen = set()
    for directory in results_dirs:
        path = directory / "results.json"
        if path.exists():
            data = json.loads(path.read_text())
            if "comparisons" not in data:  # a results file of the old format (before the verdict rule)
                continue
            lines.append(summary_line(directory, data))
            hardware_seen.add(data["hardware"])
    lines += ["", "Hardware: " + "; ".join(sorted(hardware_seen)) if hardware_seen else "No results yet."]
    text = readme.read_text()
    head, rest = text.split(SUMMARY_START, 1)
    readme.write_text(head + SUMMARY_START + "\n" + "\n".join(lines) + "\n" + SUMMARY_END + rest.split(SUMMARY_END, 1)[1])
    return True
