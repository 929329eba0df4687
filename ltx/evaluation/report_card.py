"""The demo report card's numbers: each metric with its target and verdict, as text, Markdown and JSON.

The targets say what a demo run that learned the world should reach: the VAE reconstructs held-out clips
at PSNR >= 25 dB and SSIM >= 0.8; text-to-video samples of held-out prompts show the asked-for colour in
>= 90 % of them, the motion in >= 75 % and the shape in >= 60 %; image-to-video keeps the conditioning
image (first decoded frame PSNR >= 20 dB). Metrics without a target (the DiT validation loss, how often
the evaluator found an object at all) are reported for information.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

VAE_PSNR_TARGET = 25.0  # dB
VAE_SSIM_TARGET = 0.8
ADHERENCE_TARGETS = {"colour": 0.90, "shape": 0.60, "motion": 0.75}  # fraction of samples
I2V_FIRST_FRAME_PSNR_TARGET = 20.0  # dB


@dataclass(frozen=True)
class Metric:
    """One number of the report: ``value`` (None: not measured, ``note`` says why) against the target
    ``value >= minimum`` (None: no target, reported for information). Unit ``%`` values are fractions."""

    name: str
    description: str
    value: float | None
    unit: str = ""
    minimum: float | None = None
    note: str = ""

    @property
    def passed(self) -> bool | None:
        """Whether the target is met (False when there is one but nothing was measured); None without one."""
        if self.minimum is None:
            return None
        return self.value is not None and self.value >= self.minimum

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "N/A"
        return {True: "PASS", False: "FAIL", None: "INFO"}[self.passed]

    def _format(self, number: float) -> str:
        if self.unit == "%":
            return f"{100 * number:.1f}%"
        if self.unit == "dB":
            return f"{number:.2f} dB"
        return f"{number:.4f}"

    @property
    def formatted_value(self) -> str:
        return "n/a" if self.value is None else self._format(self.value)

    @property
    def formatted_target(self) -> str:
        return "none" if self.minimum is None else f">= {self._format(self.minimum)}"

    def to_dict(self) -> dict:
        return {"description": self.description, "value": self.value, "unit": "fraction" if self.unit == "%" else self.unit,
                "target": None if self.minimum is None else {"minimum": self.minimum}, "passed": self.passed,
                "verdict": self.verdict, "note": self.note}


def adherence_metrics(prefix: str, what: str, scores: Mapping[str, float] | None, count: int,
                      note: str = "", targets: bool = True) -> list[Metric]:
    """Colour, shape and motion accuracy against ``ADHERENCE_TARGETS`` (``targets=False``: for information
    only) plus, for information, all three right and objects found; ``scores`` from ``ltx.evaluation.score``
    (None: not measured)."""
    scores = scores or {}
    metrics = [Metric(f"{prefix}/{name}", f"{what}: {name} accuracy ({count} samples)", scores.get(name), "%",
                      ADHERENCE_TARGETS[name] if targets else None, note) for name in ("colour", "shape", "motion")]
    metrics.append(Metric(f"{prefix}/all", f"{what}: colour, shape and motion all right", scores.get("all"), "%",
                          None, note))
    metrics.append(Metric(f"{prefix}/found", f"{what}: evaluator found one moving object", scores.get("found"), "%",
                          None, note))
    return metrics


def targets_met(metrics: Sequence[Metric]) -> dict[str, bool]:
    """Every metric with a target: whether it is met."""
    return {metric.name: metric.passed for metric in metrics if metric.minimum is not None}


def format_table(metrics: Sequence[Metric]) -> str:
    """Aligned text lines: description, value, target, verdict (and the note of unmeasured metrics)."""
    width = max(len(metric.description) for metric in metrics)
    lines = []
    for metric in metrics:
        line = (f"  {metric.description:<{width}}  {metric.formatted_value:>10}  target {metric.formatted_target:<10} "
                f"{metric.verdict}")
        lines.append(line + (f"  ({metric.note})" if metric.note and metric.value is None else ""))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; ``|`` in cells is escaped."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(name) for name in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_markdown(metrics: Sequence[Metric]) -> str:
    return markdown_table(["Metric", "Value", "Target", "Result", "Note"],
                          [(metric.description, metric.formatted_value, metric.formatted_target, metric.verdict,
                            metric.note) for metric in metrics])


def _verdicts(correct: Mapping[str, bool]) -> str:
    return ", ".join(f"{name} {'ok' if right else 'WRONG'}" for name, right in correct.items())


def _read(sample: Mapping) -> str:
    return " / ".join(str(sample["predicted"][name]) for name in ("colour", "shape", "motion"))


def markdown_report(report: Mapping, metrics: Sequence[Metric]) -> str:
    """``report_card.md`` from the JSON report (``ltx.cli.report_card``) and its metrics."""
    met, sheet = sum(report["targets_met"].values()), Path(report["contact_sheet"]["path"]).name
    t2v = [(index, sample["prompt"], _read(sample), _verdicts(sample["correct"]))
           for index, sample in enumerate(report["t2v_samples"])]
    i2v = [(index, sample["key"], sample["prompt"], f"{sample['first_frame_psnr']:.2f} dB", _read(sample),
            _verdicts(sample["correct"])) for index, sample in enumerate(report["i2v_samples"])]
    vae = [(row["key"], "x".join(map(str, row["shape"])), f"{row['psnr_t0']:.2f}", f"{row['ssim_t0']:.4f}",
            f"{row['psnr_noisy']:.2f}" if "psnr_noisy" in row else "n/a",
            f"{row['ssim_noisy']:.4f}" if "ssim_noisy" in row else "n/a") for row in report["vae_clips"]]
    return "\n".join([
        f"# Demo report card: {report['demo_dir']}", "",
        f"{met} of {len(report['targets_met'])} targets met. VAE `{report['vae_checkpoint']}`; DiT "
        f"`{report['dit_checkpoint']}` (decodes with this VAE: {report['dit_decodes_with_this_vae']}); held-out clips "
        f"`{report['val_shards']}`; settings `{json.dumps(report['settings'])}`.", "",
        metrics_markdown(metrics), "",
        "## Text-to-video samples (held-out prompts)", "", markdown_table(["#", "Prompt", "Read", "Verdict"], t2v), "",
        "## Image-to-video samples (first frames of held-out clips)", "",
        markdown_table(["#", "Clip", "Prompt", "First frame PSNR", "Read", "Verdict"], i2v), "",
        "## VAE on held-out clips", "",
        markdown_table(["Clip", "Frames x H x W", "PSNR t=0", "SSIM t=0", "PSNR noisy", "SSIM noisy"], vae), "",
        f"## Contact sheet: `{sheet}`", "",
        "One row per sample (text-to-video; image-to-video: the image, then the video), then VAE reconstructions "
        "(original | decoded at t=0).", "", f"![contact sheet]({sheet})", "",
    ])
