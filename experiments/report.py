"""An ablation's files: ``results.json`` (everything measured), ``results.md`` (the table and the
verdict) and ``<name>.png`` (its curves, one panel each)."""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from experiments.ablations import Result  # noqa: E402


def hardware() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__.split('+')[0]}, " \
           f"{'CUDA' if torch.cuda.is_available() else 'CPU only'}"


def format_value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, dict) and "mean" in value:
        return f"{value['mean']:.4f} ({value['min']:.4f}-{value['max']:.4f})" if value["min"] != value["max"] \
            else f"{value['mean']:.4f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown(result: Result, command: str, seconds: float) -> str:
    lines = [f"# {result.name}: results", "", f"Claim: {result.claim}", "",
             f"Command: `{command}`; hardware: {hardware()}; training time of its runs "
             f"{result.settings.get('training_minutes', 'n/a')} min (runs are cached by configuration: one shared "
             f"with another ablation is trained once); this invocation {seconds / 60:.1f} min.", "",
             "| variant | " + " | ".join(result.columns) + " |", "|---" * (len(result.columns) + 1) + "|"]
    for variant, row in result.rows.items():
        lines.append(f"| {variant} | " + " | ".join(format_value(row.get(column)) for column in result.columns) + " |")
    lines += ["", f"Paper's direction reproduced: **{'yes' if result.reproduced else 'no'}**. {result.verdict}.", "",
              f"Settings: {json.dumps(result.settings)}", ""]
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
        axis.legend(fontsize=8)
    figure.suptitle(result.name)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(readme: Path, result: Result, command: str, seconds: float) -> bool:
    """Replace the block between the results markers of an ablation's README with the new table, the
    verdict and the plot; False when the README has no such block."""
    if not readme.exists():
        return False
    text = readme.read_text()
    if RESULTS_START not in text or RESULTS_END not in text:
        return False
    body = markdown(result, command, seconds).split("\n", 2)[2]  # without the title
    block = f"{RESULTS_START}\n{body}\n![{result.name}]({result.name}.png)\n{RESULTS_END}"
    head, rest = text.split(RESULTS_START, 1)
    readme.write_text(head + block + rest.split(RESULTS_END, 1)[1])
    return True


def write(result: Result, directory: Path, command: str, seconds: float) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "results.json", "markdown": directory / "results.md",
             "plot": directory / f"{result.name}.png"}
    record = {**dataclasses.asdict(result), "command": command, "seconds": seconds, "hardware": hardware()}
    paths["json"].write_text(json.dumps(record, indent=2))
    paths["markdown"].write_text(markdown(result, command, seconds))
    plot(result, paths["plot"])
    return paths


SUMMARY_START, SUMMARY_END = "<!-- summary:start -->", "<!-- summary:end -->"


def update_summary(readme: Path, results_dirs: list[Path]) -> bool:
    """One line per ablation with a ``results.json`` in ``results_dirs``: reproduced or not, the verdict."""
    if not readme.exists() or SUMMARY_START not in readme.read_text():
        return False
    lines = ["| ablation | paper's direction reproduced | measured | training time |", "|---|---|---|---|"]
    for directory in results_dirs:
        path = directory / "results.json"
        if path.exists():
            record = json.loads(path.read_text())
            lines.append(f"| [{record['name']}]({directory.name}/README.md) | {'yes' if record['reproduced'] else 'no'} | "
                         f"{record['verdict']} | {record['settings'].get('training_minutes', 'n/a')} min |")
    text = readme.read_text()
    head, rest = text.split(SUMMARY_START, 1)
    readme.write_text(head + SUMMARY_START + "\n" + "\n".join(lines) + "\n" + SUMMARY_END + rest.split(SUMMARY_END, 1)[1])
    return True
