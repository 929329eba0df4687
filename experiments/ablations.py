"""The six ablations: how each trains its variants (every seed) and measures them, and the comparisons
whose seed-paired differences decide whether the paper's direction holds (``experiments.verdict``).
Each returns a ``Result``; ``experiments.report`` writes its files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from experiments import evaluation
from experiments.baseline import baseline_card
from experiments.runs import tail_mean
from experiments.trained import (
    Settings,
    cached_measurement,
    checkpoint_steps,
    dit_run,
    dit_spec,
    dit_validation_loss,
    logged_curve,
    measured,
    training_record,
    vae_run,
    vae_spec,
)
from experiments.verdict import Comparison, Spread, compare, overall
from experiments.workspace import UNSEEN_BUCKET, UNSEEN_WORLDS, Workspace, prepare_dit_inputs
from ltx.cli.sample import load_dit_module
from ltx.evaluation import held_out_prompts
from ltx.evaluation.contact_sheet import SheetRow, evenly_spaced_frames, write_contact_sheet
from ltx.training.build import vae_from_checkpoint
from ltx.training.samples import SampleSettings

PerSeed = dict[str, dict[str, dict[int, float]]]  # variant -> metric -> seed -> value
Run = tuple[Path, Callable[[], Path]]  # a run's directory, and what trains it (returning the directory)


@dataclass(frozen=True)
class Column:
    """A metric of the results table: its key, how it reads, which way is better (None: no direction)."""

    key: str
    label: str
    better: str | None = None
    digits: int = 4


@dataclass
class Result:
    """What an ablation measured: per variant, metric and seed the value; the comparisons that decide
    (and those that inform); curves to plot (panel -> label -> points); extra figures (file -> caption);
    the baseline's numbers against the demo's targets."""

    name: str
    claim: str
    columns: list[Column]
    per_seed: PerSeed
    comparisons: list[Comparison]
    curves: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return overall(self.comparisons)

    @property
    def verdict(self) -> str:
        """The primary comparisons, each with its numbers and outcome."""
        return "; ".join(comparison.describe() for comparison in self.comparisons if comparison.primary)

    def rows(self) -> dict[str, dict[str, Spread | None]]:
        """Per variant and column: mean, spread and per-seed values (None: not measured)."""
        return {variant: {column.key: Spread.of(list(metrics[column.key].values())) if metrics.get(column.key) else None
                          for column in self.columns} for variant, metrics in self.per_seed.items()}


# ---- VAE ablations ------------------------------------------------------------------------------------
def reconstruction_ablation(workspace: Workspace, settings: Settings) -> tuple[PerSeed, dict[str, Any], dict[str, Run]]:
    """Every variant and seed: the reconstruction metrics of its EMA weights on the held-out clips; the
    validation PSNR curves (seed 0); the runs of seed 0 (directory, how to train it)."""
    videos = evaluation.held_out_videos(workspace.demo / "val")
    backbone = settings.extra.get("lpips_backbone")
    lpips = evaluation.build_lpips(backbone)
    per_seed: PerSeed = {}
    curves, first_runs = {}, {}
    for variant in settings.variants:
        for seed in settings.seeds:
            run_dir = vae_spec(workspace, settings, variant, seed).run_dir(workspace.runs)
            train = partial(vae_run, workspace, settings, variant, seed)
            key = "reconstruction" + (f"-lpips-{Path(backbone).name}" if backbone else "")
            values = measured(workspace, settings, run_dir, key, partial(_reconstruction, videos=videos, lpips=lpips),
                              train, required=evaluation.RECONSTRUCTION_METRICS)
            for metric, value in values.items():
                if value is not None:
                    per_seed.setdefault(variant, {}).setdefault(metric, {})[seed] = value
            if seed == settings.seeds[0]:
                first_runs[variant] = (run_dir, train)
                curves[variant] = [(float(step), value) for step, value in
                                   logged_curve(workspace, settings, run_dir, "val/psnr", train)]
    return per_seed, curves, first_runs


def _last_vae(run_dir: Path):
    return vae_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")


def _reconstruction(run_dir: Path, videos, lpips) -> dict[str, Any]:
    return evaluation.reconstruction_metrics(_last_vae(run_dir), videos, lpips)


def _noisy_latents(run_dir: Path, videos, levels, timestep: float, renoise: float) -> dict[str, Any]:
    return evaluation.noisy_latent_psnr(_last_vae(run_dir), videos, levels, timestep, renoise)


def _decode_both_ways(dit_dir: Path, prompts, sample: SampleSettings) -> dict[str, Any]:
    return evaluation.sampled_latents_decoded_both_ways(load_dit_module(dit_dir / "checkpoints" / "last.ckpt"),
                                                        prompts, sample)


RECONSTRUCTION_COLUMNS = [Column("psnr", "PSNR (dB)", "higher", 2), Column("ssim", "SSIM", "higher"),
                          Column("lpips", "LPIPS", "lower"),
                          Column("high_frequency_error", "high-frequency error", "lower"),
                          Column("sharpness", "sharpness (gradient ratio, 1 = original)", None, 3),
                          Column("sharpness_gap", "sharpness gap (mean distance of the ratio from 1)", "lower", 3),
                          Column("psnr_t005", "PSNR, latents at t=0.05 (dB)", "higher", 2),
                          Column("read_shape", "evaluator: shape read back", "higher", 3)]


def lpips_note(settings: Settings) -> list[str]:
    if settings.extra.get("lpips_backbone"):
        return []
    return ["LPIPS is not measured: no backbone is configured (set `lpips_backbone` in the config.yaml to a local "
            "torchvision VGG16 state dict; nothing is downloaded)."]


def side_by_side(workspace: Workspace, runs: dict[str, Run], path: Path, clips: int = 4) -> Path:
    """Original and each variant's reconstruction (seed 0) of the first ``clips`` held-out world clips. Kept
    when ``path`` is the figure these runs drew (its SHA-256 in each run's ledger entry), else drawn again,
    training the runs that are not."""
    name = f"side_by_side-{clips}"
    if path.exists():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if all((workspace.ledger.measurement(run_dir, name) or {}).get("sha256") == digest for run_dir, _ in runs.values()):
            return path
    videos = [item for item in evaluation.held_out_videos(workspace.demo / "val") if item.clip.labels][:clips]
    decoded = {variant: evaluation.reconstruct(_last_vae(train()), videos) for variant, (_, train) in runs.items()}
    rows = [SheetRow(f"{item.clip.caption}\noriginal | " + " | ".join(decoded),
                     [evenly_spaced_frames(item.video, 4)] + [evenly_spaced_frames(decoded[variant][index], 4)
                                                               for variant in decoded])
            for index, item in enumerate(videos)]
    write_contact_sheet(rows, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    for run_dir, _ in runs.values():
        workspace.ledger.record_measurement(run_dir, name, {"sha256": digest, "variants": list(runs)})
    return path


def vae_gan(workspace: Workspace, settings: Settings) -> Result:
    per_seed, curves, first_runs = reconstruction_ablation(workspace, settings)
    figure = side_by_side(workspace, first_runs, settings.extra["output_dir"] / "side_by_side.png")
    comparisons = [compare("psnr", "rgan", "gan", "higher", per_seed),
                   compare("high_frequency_error", "rgan", "gan", "lower", per_seed),
                   compare("ssim", "rgan", "gan", "higher", per_seed, primary=False),
                   compare("sharpness_gap", "rgan", "gan", "lower", per_seed, primary=False),
                   compare("psnr", "rgan", "no_gan", "higher", per_seed, primary=False),
                   compare("high_frequency_error", "rgan", "no_gan", "lower", per_seed, primary=False)]
    return Result("vae_gan", "The reconstruction GAN (rGAN) beats a standard GAN at high compression (1:192).",
                  RECONSTRUCTION_COLUMNS, per_seed, comparisons, {"validation PSNR (dB), seed 0": curves},
                  {figure.name: "held-out clips: original, then each variant's reconstruction (seed 0)"},
                  baseline_card(workspace, settings.seeds), lpips_note(settings))


def dwt_loss(workspace: Workspace, settings: Settings) -> Result:
    per_seed, curves, _ = reconstruction_ablation(workspace, settings)
    comparisons = [compare("high_frequency_error", "with_dwt", "without_dwt", "lower", per_seed),
                   compare("psnr", "with_dwt", "without_dwt", "higher", per_seed, primary=False),
                   compare("sharpness_gap", "with_dwt", "without_dwt", "lower", per_seed, primary=False)]
    return Result("dwt_loss", "The video DWT loss keeps high-frequency detail (paper Sec. 3.1).",
                  RECONSTRUCTION_COLUMNS, per_seed, comparisons, {"validation PSNR (dB), seed 0": curves},
                  baseline=baseline_card(workspace, settings.seeds), notes=lpips_note(settings))


LOGVAR_COLUMNS = [Column("components_for_90_percent", "components for 90 % of the variance", "higher", 1),
                  Column("components_for_99_percent", "components for 99 %", "higher", 1),
                  Column("kl_max_over_mean", "largest channel KL / mean", "lower", 2),
                  Column("first_component_share", "first component's share", "lower", 3),
                  Column("psnr", "PSNR (dB)", "higher", 2)]


def vae_logvar(workspace: Workspace, settings: Settings) -> Result:
    """PCA of the posterior means (the paper's Fig. 3) at every checkpoint of each run, over the held-out
    clips and the first ``pca_training_clips`` training clips of the world."""
    clips = int(settings.extra["pca_training_clips"])
    held_out = evaluation.held_out_videos(workspace.demo / "val")
    videos = held_out + evaluation.held_out_videos(workspace.demo / "world" / "shards", limit=clips)
    per_seed: PerSeed = {}
    spectra: dict[str, list[tuple[float, float]]] = {}
    kls: dict[str, list[tuple[float, float]]] = {}
    first_seed = settings.seeds[0]
    for variant in settings.variants:
        for seed in settings.seeds:

            def measure(run_dir: Path) -> dict[str, Any]:
                by_step = {step: evaluation.latent_channel_statistics(vae_from_checkpoint(path), videos)
                           for step, path in checkpoint_steps(run_dir).items()}
                final = evaluation.reconstruction_metrics(vae_from_checkpoint(run_dir / "checkpoints" / "last.ckpt"),
                                                          held_out)
                return {"by_step": {str(step): stats for step, stats in by_step.items()}, "psnr": final["psnr"]}

            values = measured(workspace, settings, vae_spec(workspace, settings, variant, seed).run_dir(workspace.runs),
                              "latent_pca", measure, partial(vae_run, workspace, settings, variant, seed))
            steps = sorted(values["by_step"], key=int)
            final = values["by_step"][steps[-1]]
            metrics = {"components_for_90_percent": final["components_for_90_percent"],
                       "components_for_99_percent": final["components_for_99_percent"],
                       "kl_max_over_mean": final["kl_max_over_mean"],
                       "first_component_share": final["explained_variance_ratio"][0], "psnr": values["psnr"],
                       "components_for_90_percent_first_checkpoint": values["by_step"][steps[0]]["components_for_90_percent"]}
            for metric, value in metrics.items():
                per_seed.setdefault(variant, {}).setdefault(metric, {})[seed] = value
            if seed == first_seed:
                for step in steps:
                    cumulative = values["by_step"][step]["cumulative_explained_variance"]
                    spectra[f"{variant}, step {step}"] = [(float(i + 1), value) for i, value in enumerate(cumulative)]
                kls[variant] = [(float(i), value) for i, value in enumerate(sorted(final["kl_per_channel"], reverse=True))]
    # Fig. 3's second claim, within the baseline: redundancy falls as training goes on
    baseline = next(iter(settings.variants))
    progress = per_seed.setdefault(f"{baseline}, first checkpoint", {})
    progress["components_for_90_percent"] = per_seed[baseline]["components_for_90_percent_first_checkpoint"]
    comparisons = [compare("components_for_90_percent", "uniform", "per_channel", "higher", per_seed),
                   compare("kl_max_over_mean", "uniform", "per_channel", "lower", per_seed),
                   compare("psnr", "uniform", "per_channel", "higher", per_seed, primary=False),
                   compare("components_for_90_percent", baseline, f"{baseline}, first checkpoint", "higher", per_seed,
                           primary=False)]
    return Result("vae_logvar", "A uniform (shared) log-variance spreads information over the latent channels "
                  "(paper Sec. 3.1), and redundancy falls as training goes on (paper Fig. 3).", LOGVAR_COLUMNS,
                  per_seed, comparisons, {f"cumulative explained variance (seed {first_seed})": spectra,
                                          f"KL per channel, sorted (seed {first_seed})": kls},
                  baseline=baseline_card(workspace, settings.seeds),
                  notes=[f"PCA over {len(videos)} clips' posterior means (the held-out clips and the first "
                         f"{settings.extra['pca_training_clips']} training clips of the world), EMA weights, at every "
                         f"checkpoint of each run."])


def decoder_denoising(workspace: Workspace, settings: Settings) -> Result:
    """On each seed's baseline VAE: decode latents carrying noise as clean (t=0) vs the release's way;
    on each seed's baseline DiT: its sampled latents for held-out prompts decoded both ways, read back by
    the demo-world evaluator."""
    videos = evaluation.held_out_videos(workspace.demo / "val")
    levels = [float(level) for level in settings.extra["noise_levels"]]
    timestep, renoise = float(settings.extra["decode_timestep"]), float(settings.extra["renoise_scale"])
    modes = {"clean": "decode at t=0", "denoise": f"re-noise {renoise}, decode at t={timestep}"}
    per_seed: PerSeed = {label: {} for label in modes.values()}
    prompts = held_out_prompts(int(settings.extra["prompts"]))
    sample = SampleSettings(frames=17, height=64, width=64, num_steps=int(settings.extra["sampling_steps"]),
                            decode_timestep=timestep, renoise_scale=renoise)
    for seed in settings.seeds:
        psnr = measured(workspace, settings, workspace.baseline_vae(seed).run_dir(workspace.runs),
                        f"noisy_latents-{levels}-{timestep}-{renoise}",
                        partial(_noisy_latents, videos=videos, levels=levels, timestep=timestep, renoise=renoise),
                        partial(vae_run, workspace, settings, "baseline", seed))
        for mode, label in modes.items():
            for level in levels:
                per_seed[label].setdefault(f"psnr_at_noise_{level}", {})[seed] = psnr[f"{level}/{mode}"]
        scores = measured(workspace, settings, dit_spec(workspace, [], seed).run_dir(workspace.runs),
                          f"decode_both_ways-{len(prompts)}-{sample.num_steps}-{timestep}-{renoise}",
                          partial(_decode_both_ways, prompts=prompts, sample=sample),
                          partial(dit_run, workspace, settings, [], seed))
        for mode, label in modes.items():
            for name in ("colour", "shape", "motion"):
                per_seed[label].setdefault(f"dit_{name}", {})[seed] = scores[mode][name]
    noisy = [level for level in levels if level > 0]
    clean, denoise = modes["clean"], modes["denoise"]
    comparisons = [compare(f"psnr_at_noise_{level}", denoise, clean, "higher", per_seed) for level in noisy]
    comparisons += [compare(f"psnr_at_noise_{level}", denoise, clean, "higher", per_seed, primary=False)
                    for level in levels if level == 0]
    comparisons += [compare(f"dit_{name}", denoise, clean, "higher", per_seed, primary=False)
                    for name in ("colour", "shape", "motion")]
    columns = [Column(f"psnr_at_noise_{level}", f"PSNR (dB), latent noise {level}", "higher", 2) for level in levels]
    columns += [Column(f"dit_{name}", f"DiT samples: {name} read back", "higher", 3) for name in ("colour", "shape", "motion")]
    curves = {label: [(level, Spread.of(list(per_seed[label][f"psnr_at_noise_{level}"].values())).mean)
                      for level in levels] for label in modes.values()}
    return Result("decoder_denoising", "Decoding at t = 0.05 with re-noising beats decoding at t = 0 (paper Sec. 3.1, "
                  "the denoising decoder).", columns, per_seed, comparisons, {"PSNR (dB) against latent noise": curves},
                  baseline=baseline_card(workspace, settings.seeds, settings.seeds),
                  notes=[f"Each seed's baseline VAE (trained with the denoising decoder) on the held-out clips; the DiT "
                         f"rows: each seed's baseline DiT, {settings.extra['prompts']} held-out prompts, "
                         f"{settings.extra['sampling_steps']} sampling steps, the same final latents decoded both ways."])


# ---- DiT ablations ------------------------------------------------------------------------------------
DIT_COLUMNS = [Column("train_loss_end", "training loss (last 20 %)", "lower"), Column("val_loss", "validation loss", "lower"),
               Column("val_loss_near_unseen", "validation loss, unseen size and duration near the training ones",
                      "lower"),
               Column("val_loss_longer", "validation loss, training size, twice the duration", "lower"),
               Column("val_loss_unseen_size", "validation loss, unseen size and duration far from them", "lower"),
               Column("adherence_colour", "colour", "higher", 3), Column("adherence_shape", "shape", "higher", 3),
               Column("adherence_motion", "motion", "higher", 3)]


def dit_ablation(workspace: Workspace, settings: Settings) -> tuple[PerSeed, dict[str, list[tuple[float, float]]]]:
    """Every variant and seed: the final training loss (mean of the last 20 % of logged steps), the
    validation losses, the prompt adherence of its last validation (held-out prompts, demo evaluator);
    the training loss curves (mean over seeds)."""
    per_seed: PerSeed = {}
    curves = {}
    for variant, overrides in settings.variants.items():
        seed_curves = []
        for seed in settings.seeds:
            run_dir = dit_spec(workspace, overrides, seed).run_dir(workspace.runs)
            train = partial(dit_run, workspace, settings, overrides, seed)
            losses = training_record(workspace, settings, run_dir, train)["after"]
            curve = logged_curve(workspace, settings, run_dir, "train/loss", train)
            seed_curves.append(curve)
            unseen = {f"val_loss_{name}": measured(workspace, settings, run_dir, f"val_loss_{name}", partial(
                _unseen_world_loss, workspace=workspace, name=name), train)["val_loss"] for name in UNSEEN_WORLDS}
            values = {"train_loss_end": tail_mean(curve), **losses, **unseen}
            for metric, value in values.items():
                per_seed.setdefault(variant, {}).setdefault(metric, {})[seed] = value
        curves[variant] = mean_curve(seed_curves)
    return per_seed, curves


def _unseen_world_loss(run_dir: Path, workspace: Workspace, name: str) -> dict[str, float]:
    return dit_validation_loss(run_dir, workspace.unseen_world_latents(name))


def rope_spacing(workspace: Workspace, settings: Settings) -> Result:
    per_seed, curves = dit_ablation(workspace, settings)
    comparisons = [compare("train_loss_end", "exponential", "inverse_exponential", "lower", per_seed),
                   compare("val_loss", "exponential", "inverse_exponential", "lower", per_seed, primary=False),
                   *[compare(f"adherence_{name}", "exponential", "inverse_exponential", "higher", per_seed,
                             primary=False) for name in ("colour", "shape", "motion")]]
    return Result("rope_spacing", "Exponential RoPE frequency spacing gives a lower training loss than "
                  "inverse-exponential (paper Fig. 8).", DIT_COLUMNS, per_seed, comparisons,
                  {"training loss (mean over seeds)": curves}, baseline=baseline_card(workspace, [0], settings.seeds))


def positions(workspace: Workspace, settings: Settings) -> Result:
    per_seed, curves = dit_ablation(workspace, settings)
    ours = "relative_fractional"
    others = [variant for variant in settings.variants if variant != ours]
    comparisons = [compare("val_loss_near_unseen", ours, other, "lower", per_seed) for other in others]
    comparisons += [compare(metric, ours, other, better, per_seed, primary=False) for other in others
                    for metric, better in (("val_loss_longer", "lower"), ("val_loss_unseen_size", "lower"), ("val_loss", "lower"),
                                           ("train_loss_end", "lower"), ("adherence_shape", "higher"))]
    sizes = {f"{name} ({world.frames}x{world.height}x{world.width}, {world.val_clips} held-out world clips)":
             workspace.unseen_world_latents(name) for name, world in
             ((name, workspace.unseen_world(name)) for name in UNSEEN_WORLDS)}
    sizes[f"the far unseen size ({'x'.join(map(str, UNSEEN_BUCKET))}, held-out demo sources)"] = workspace.unseen_latents
    baseline = workspace.baseline_vae(0).run_dir(workspace.runs)  # whose latents they are

    def zero_prediction() -> dict[str, float]:
        prepare_dit_inputs(workspace)
        return {label: evaluation.zero_prediction_loss(shards) for label, shards in sizes.items()}

    losses = cached_measurement(baseline, f"zero_prediction_loss-{len(sizes)}", zero_prediction, required=sizes,
                                ledger=workspace.ledger)
    notes = ["Predicting zero velocity scores " + ", ".join(f"{losses[label]:.3f} on {label}" for label in sizes)
             + ": a validation loss above that has learned nothing that carries over to the size."]
    return Result("positions", "Relative-fractional positions work best, also at a resolution and duration not seen "
                  "in training (paper Sec. 2.2).", DIT_COLUMNS, per_seed, comparisons,
                  {"training loss (mean over seeds)": curves}, baseline=baseline_card(workspace, [0], settings.seeds),
                  notes=notes)


ABLATIONS: dict[str, Callable[[Workspace, Settings], Result]] = {
    "rope_spacing": rope_spacing, "positions": positions, "decoder_denoising": decoder_denoising,
    "dwt_loss": dwt_loss, "vae_logvar": vae_logvar, "vae_gan": vae_gan,
}


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[float, float]]:
    """The mean over seeds at the steps every seed logged."""
    steps = set.intersection(*(set(step for step, _ in curve) for curve in curves))
    by_seed = [dict(curve) for curve in curves]
    return [(float(step), sum(seed[step] for seed in by_seed) / len(by_seed)) for step in sorted(steps)]
