"""The baseline's numbers against the demo's targets (``ltx.evaluation.report_card``): an ablation's verdict
counts only when the model it varies works. The VAE: PSNR / SSIM of each seed's baseline VAE on the held-out
clips; the DiT (for the ablations that train or sample it): each seed's baseline DiT's prompt adherence on
held-out prompts at its last validation."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from experiments import evaluation
from experiments.trained import Settings, dit_run, dit_spec, measured, trained, training_record
from experiments.verdict import Spread
from experiments.workspace import Workspace
from ltx.evaluation.report_card import ADHERENCE_TARGETS, VAE_PSNR_TARGET, VAE_SSIM_TARGET
from ltx.training.build import vae_from_checkpoint


def baseline_card(workspace: Workspace, vae_seeds: list[int], dit_seeds: list[int] | None = None) -> dict[str, Any]:
    """Per target: the per-seed values, their spread, the target and whether every seed meets it; and
    ``all_met``. The VAE rows are of the baseline VAEs of ``vae_seeds``; the DiT rows (with ``dit_seeds``) of
    the baseline DiTs of those seeds, all trained on the seed-0 baseline VAE's latents."""
    seeds = vae_seeds
    settings = Settings("baseline", {"baseline": []}, seeds, {})
    videos = None
    rows: dict[str, dict[str, Any]] = {}
    psnr, ssim = {}, {}
    for seed in seeds:

        def measure(run_dir: Path) -> dict[str, Any]:
            nonlocal videos
            videos = videos or evaluation.held_out_videos(workspace.demo / "val")
            return evaluation.reconstruction_metrics(vae_from_checkpoint(run_dir / "checkpoints" / "last.ckpt"), videos)

        spec = workspace.baseline_vae(seed)
        values = measured(workspace, settings, spec.run_dir(workspace.runs), "reconstruction", measure,
                          partial(trained, workspace, settings, spec))
        psnr[seed], ssim[seed] = values["psnr"], values["ssim"]
    rows["vae_psnr"] = _row("VAE PSNR on held-out clips (dB)", psnr, VAE_PSNR_TARGET)
    rows["vae_ssim"] = _row("VAE SSIM on held-out clips", ssim, VAE_SSIM_TARGET)
    if dit_seeds:
        adherence: dict[str, dict[int, float]] = {name: {} for name in ADHERENCE_TARGETS}
        for seed in dit_seeds:
            after = training_record(workspace, settings, dit_spec(workspace, [], seed).run_dir(workspace.runs),
                                    partial(dit_run, workspace, settings, [], seed))["after"]
            for name in ADHERENCE_TARGETS:
                adherence[name][seed] = after[f"adherence_{name}"]
        for name, target in ADHERENCE_TARGETS.items():
            rows[f"dit_{name}"] = _row(f"DiT text-to-video {name} on held-out prompts", adherence[name], target)
    return {"rows": rows, "all_met": all(row["met"] for row in rows.values()), "runs": sorted({str(run) for run in settings.runs})}


def _row(label: str, values: dict[int, float], target: float) -> dict[str, Any]:
    spread = Spread.of([values[seed] for seed in sorted(values)])
    return {"label": label, "seeds": sorted(values), **spread.to_dict(), "target": target,
            "met": all(value >= target for value in values.values())}
