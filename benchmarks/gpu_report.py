"""The GPU check's report: ``gpu_check.json`` (every row, note and error) and ``gpu_check.md`` (the tables)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu_plan import Plan, SectionResult


def machine(plan: Plan) -> dict[str, Any]:
    values: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "plan": plan.name,
                              "device": plan.device}
    try:
        import diffusers

        values["diffusers"] = diffusers.__version__
    except ImportError:
        values["diffusers"] = None
    if plan.torch_device.type == "cuda":
        values.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                      gpu_memory_GiB=torch.cuda.get_device_properties(0).total_memory / 2**30)
    return values


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(results: list[SectionResult], info: dict[str, Any], elapsed: float) -> str:
    lines = [f"# GPU check ({info.get('plan')}): {info.get('gpu') or info.get('device')}", "",
             ", ".join(f"{key} {value}" for key, value in info.items()) + f"; {elapsed:.0f} s in all", ""]
    for section in results:
        lines.append(f"## {section.name}: {section.status} ({section.seconds:.0f} s)")
        lines.append("")
        if section.rows:
            columns = list(dict.fromkeys(key for row in section.rows for key in row))
            lines.append("| " + " | ".join(columns) + " |")
            lines.append("|" + "---|" * len(columns))
            for row in section.rows:
                lines.append("| " + " | ".join(_cell(row.get(column)) for column in columns) + " |")
            lines.append("")
        lines += [f"- {note}" for note in section.notes]
        if section.error:
            lines += ["", "```", section.error.strip()[-2000:], "```"]
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path, results: list[SectionResult], info: dict[str, Any], elapsed: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "elapsed_s": elapsed,
               "sections": {result.name: {"status": result.status, "seconds": result.seconds, "rows": result.rows,
                                          "notes": result.notes, "error": result.error} for result in results}}
    (out / "gpu_check.json").write_text(json.dumps(payload, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(results, info, elapsed))

