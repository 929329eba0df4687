"""The six ablations: how each trains its variants and measures them, and which way the paper says the
result should go. Each returns a ``Result``; ``experiments.report`` writes its files."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments import evaluation
from experiments.runs import RunSpec, metric_curve, tail_mean, train
from experiments.workspace import Workspace, vae_run_overrides
from ltx.training.build import vae_from_checkpoint

ROOT = Path(__file__).resolve().parent


@dataclass
class Result:
    """What an ablation measured: rows of the table (variant -> column -> value), curves to plot
    (label -> [(step, value)] or (x, y) lists), and whether the paper's direction held."""

    name: str
    claim: str
    columns: list[str]
    rows: dict[str, dict[str, Any]]
    reproduced: bool
    verdict: str
    curves: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)  # panel -> label -> points
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """``experiments/<name>/config.yaml``: variants (name -> overrides), steps and seeds per mode."""

    name: str
    variants: dict[str, list[str]]
    steps: int
    seeds: list[int]
    extra: dict[str, Any]
    runs: list[Path] = field(default_factory=list, compare=False)  # the run directories used, filled while running

    @classmethod
    def load(cls, name: str, quick: bool) -> Settings:
        raw = OmegaConf.to_container(OmegaConf.load(ROOT / name / "config.yaml"), resolve=True)
        mode = raw.pop("quick" if quick else "full")
        raw.pop("full" if quick else "quick", None)
        variants = {key: list(value or []) for key, value in raw.pop("variants", {}).items()}
        steps, seeds = int(mode.pop("steps")), list(mode.pop("seeds", [0]))
        return cls(name, variants, steps, seeds, {**raw, **mode})


# ---- DiT ablations ------------------------------------------------------------------------------------
def dit_run(workspace: Workspace, settings: Settings, variant: str, seed: int) -> tuple[Path, dict[str, Any]]:
    steps = settings.steps
    every = max(1, min(50, steps))
    overrides = [*workspace.latent_overrides(), f"seed={seed}", f"trainer.max_steps={steps}",
                 f"trainer.log_every_n_steps={max(1, steps // 50)}", f"data.batches_per_epoch={every}",
                 f"callbacks.checkpoint.every_n_train_steps={steps}", *settings.variants[variant]]
    spec = RunSpec("train_dit", tuple(overrides))
    record = train(spec, workspace.runs, after=lambda trainer: validate_dit(trainer, workspace))
    settings.runs.append(spec.run_dir(workspace.runs))
    return spec.run_dir(workspace.runs), record["after"]


def validate_dit(trainer: L.Trainer, workspace: Workspace) -> dict[str, float]:
    """The trained DiT's validation loss (fixed timesteps and noise) on the held-out latents at the
    training sizes and at ``UNSEEN_BUCKET``."""
    module = trainer.lightning_module
    losses = {}
    for name, shards in (("val_loss", workspace.latents / "val"), ("val_loss_unseen_size", workspace.unseen_latents)):
        datamodule = instantiate(module.cfg.data, val_shards=str(shards))
        [metrics] = trainer.validate(module, datamodule=datamodule, verbose=False)
        losses[name] = float(metrics["val/loss"])
    return losses


def dit_ablation(workspace: Workspace, settings: Settings) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Train every variant with every seed: per variant the final training loss (mean of the last 20% of
    logged steps) and validation losses, as mean and spread over seeds; the loss curves."""
    rows, curves = {}, {}
    for variant in settings.variants:
        finals, seen, unseen, per_seed = [], [], [], []
        for seed in settings.seeds:
            run_dir, losses = dit_run(workspace, settings, variant, seed)
            curve = metric_curve(run_dir, "train/loss")
            per_seed.append(curve)
            finals.append(tail_mean(curve))
            seen.append(losses["val_loss"])
            unseen.append(losses["val_loss_unseen_size"])
        rows[variant] = {"train_loss_end": _mean_spread(finals), "val_loss": _mean_spread(seen),
                         "val_loss_unseen_size": _mean_spread(unseen), "seeds": len(settings.seeds),
                         "per_seed": {"train_loss_end": finals, "val_loss": seen, "val_loss_unseen_size": unseen}}
        curves[variant] = _mean_curve(per_seed)
    return rows, curves


def rope_spacing(workspace: Workspace, settings: Settings) -> Result:
    rows, curves = dit_ablation(workspace, settings)
    ours, other = rows["exponential"]["train_loss_end"]["mean"], rows["inverse_exponential"]["train_loss_end"]["mean"]
    wins = paired_wins(rows["exponential"], rows["inverse_exponential"], "train_loss_end")
    reproduced = ours < other
    verdict = (f"exponential spacing ends at training loss {ours:.4f} against {other:.4f} for inverse-exponential "
               f"(mean of {len(settings.seeds)} seeds; lower in {wins} of {len(settings.seeds)} same-seed pairs): "
               f"{'lower, as the paper reports' if reproduced else 'not lower'}")
    return Result("rope_spacing", "Exponential RoPE frequency spacing gives a lower training loss than "
                  "inverse-exponential (paper Fig. 8).", ["train_loss_end", "val_loss"], rows, reproduced, verdict,
                  {"training loss": curves})


def positions(workspace: Workspace, settings: Settings) -> Result:
    rows, curves = dit_ablation(workspace, settings)
    best_unseen = strictly_lowest({v: row["val_loss_unseen_size"]["mean"] for v, row in rows.items()})
    best_train = strictly_lowest({v: row["train_loss_end"]["mean"] for v, row in rows.items()})
    reproduced = best_unseen == "relative_fractional"
    pairs = ", ".join(f"{paired_wins(rows['relative_fractional'], rows[other], 'val_loss_unseen_size')} of "
                      f"{len(settings.seeds)} against {other}" for other in rows if other != "relative_fractional")
    verdict = (f"lowest validation loss at the unseen size and duration: {best_unseen or 'a tie'}; lowest training "
               f"loss: {best_train or 'a tie'} ({'as' if reproduced else 'not as'} the paper's choice of "
               f"relative-fractional positions; relative-fractional lower at the unseen size in {pairs} same-seed pairs)")
    return Result("positions", "Relative-fractional positions work best, also at a resolution and duration "
                  "not seen in training (paper Sec. 2.2).", ["train_loss_end", "val_loss", "val_loss_unseen_size"],
                  rows, reproduced, verdict, {"training loss": curves})


# ---- VAE ablations ------------------------------------------------------------------------------------
def vae_run(workspace: Workspace, settings: Settings, variant: str) -> Path:
    overrides = vae_run_overrides(workspace, settings.steps, *settings.extra.get("base", []), *settings.variants[variant])
    spec = RunSpec("train_vae", tuple(overrides))
    train(spec, workspace.runs)
    settings.runs.append(spec.run_dir(workspace.runs))
    return spec.run_dir(workspace.runs)


def reconstruction_ablation(workspace: Workspace, settings: Settings) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    videos = evaluation.demo_videos(workspace.demo)
    lpips = evaluation.build_lpips(settings.extra.get("lpips_backbone"))
    rows, curves = {}, {}
    for variant in settings.variants:
        run_dir = vae_run(workspace, settings, variant)
        vae = vae_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", use_ema=False)
        rows[variant] = evaluation.reconstruction_metrics(vae, videos, lpips)
        curves[variant] = [(float(step), value) for step, value in metric_curve(run_dir, "val/psnr")]
    return rows, curves


RECONSTRUCTION_COLUMNS = ["psnr", "ssim", "lpips", "high_frequency_error"]


def vae_gan(workspace: Workspace, settings: Settings) -> Result:
    rows, curves = reconstruction_ablation(workspace, settings)
    rgan, gan = rows["rgan"], rows["gan"]
    reproduced = rgan["psnr"] > gan["psnr"] and rgan["high_frequency_error"] < gan["high_frequency_error"]
    verdict = (f"rGAN: PSNR {rgan['psnr']:.2f} dB, high-frequency error {rgan['high_frequency_error']:.4f}; GAN: "
               f"{gan['psnr']:.2f} dB, {gan['high_frequency_error']:.4f}; no GAN: {rows['no_gan']['psnr']:.2f} dB, "
               f"{rows['no_gan']['high_frequency_error']:.4f}. rGAN better than GAN on both: "
               f"{'yes' if reproduced else 'no'}")
    return Result("vae_gan", "The reconstruction GAN (rGAN) beats a standard GAN at high compression (1:192).",
                  RECONSTRUCTION_COLUMNS, rows, reproduced, verdict, {"validation PSNR (dB)": curves})


def dwt_loss(workspace: Workspace, settings: Settings) -> Result:
    rows, curves = reconstruction_ablation(workspace, settings)
    on, off = rows["with_dwt"], rows["without_dwt"]
    reproduced = on["high_frequency_error"] < off["high_frequency_error"]
    verdict = (f"high-frequency error {on['high_frequency_error']:.4f} with the DWT loss, "
               f"{off['high_frequency_error']:.4f} without; PSNR {on['psnr']:.2f} against {off['psnr']:.2f} dB: "
               f"{'lower with it, as the paper reports' if reproduced else 'not lower with it'}")
    return Result("dwt_loss", "The video DWT loss keeps high-frequency detail (paper Sec. 3.1).",
                  RECONSTRUCTION_COLUMNS, rows, reproduced, verdict, {"validation PSNR (dB)": curves})


def vae_logvar(workspace: Workspace, settings: Settings) -> Result:
    # every demo clip, training and held-out: the question is how the latent space is used, and PCA over
    # 128 channels needs many latent positions
    videos = evaluation.demo_videos(workspace.demo, split="shards") + evaluation.demo_videos(workspace.demo)
    rows, spectra, kls = {}, {}, {}
    for variant in settings.variants:
        run_dir = vae_run(workspace, settings, variant)
        vae = vae_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", use_ema=False)
        stats = evaluation.latent_channel_statistics(vae, videos)
        rows[variant] = {"components_for_90_percent": stats["components_for_90_percent"],
                         "components_for_99_percent": stats["components_for_99_percent"],
                         "kl_max_over_mean": stats["kl_max_over_mean"],
                         "first_component_share": stats["explained_variance_ratio"][0]}
        spectra[variant] = [(float(i + 1), value) for i, value in enumerate(stats["cumulative_explained_variance"])]
        kls[variant] = [(float(i), value) for i, value in enumerate(sorted(stats["kl_per_channel"], reverse=True))]
    uniform, per_channel = rows["uniform"], rows["per_channel"]
    reproduced = (uniform["components_for_90_percent"] > per_channel["components_for_90_percent"]
                  and uniform["kl_max_over_mean"] < per_channel["kl_max_over_mean"])
    verdict = (f"principal components for 90% of the latent variance: {uniform['components_for_90_percent']} with a "
               f"uniform log-variance, {per_channel['components_for_90_percent']} per-channel; largest channel KL over "
               f"the mean {uniform['kl_max_over_mean']:.2f} against {per_channel['kl_max_over_mean']:.2f}: "
               f"{'spread more evenly, as the paper reports' if reproduced else 'not spread more evenly on both'}")
    return Result("vae_logvar", "A uniform (shared) log-variance spreads information evenly over the latent "
                  "channels (paper Fig. 3).", list(rows["uniform"]), rows, reproduced, verdict,
                  {"cumulative explained variance": spectra, "KL per channel (sorted)": kls})


def decoder_denoising(workspace: Workspace, settings: Settings) -> Result:
    videos = evaluation.demo_videos(workspace.demo)
    levels = [float(level) for level in settings.extra["noise_levels"]]
    timestep, renoise = float(settings.extra["decode_timestep"]), float(settings.extra["renoise_scale"])
    rows, curves = {}, {}
    for variant in settings.variants:
        run_dir = vae_run(workspace, settings, variant)
        vae = vae_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", use_ema=False)
        psnr = evaluation.noisy_latent_reconstruction(vae, videos, levels, timestep, renoise)
        for mode in ("clean", "denoise"):
            label = f"{variant}, decode {'t=0' if mode == 'clean' else f't={timestep} + re-noise'}"
            rows[label] = {f"psnr_at_noise_{level}": psnr[f"{level}/{mode}"] for level in levels}
            curves[label] = [(level, psnr[f"{level}/{mode}"]) for level in levels]
    noisy = [level for level in levels if level > 0]
    trained = "trained_with_denoising"
    wins = [rows[f"{trained}, decode t={timestep} + re-noise"][f"psnr_at_noise_{level}"]
            > rows[f"{trained}, decode t=0"][f"psnr_at_noise_{level}"] for level in noisy]
    reproduced = all(wins)
    verdict = (f"the denoising decoder at t={timestep} with re-noising beats decoding at t=0 at "
               f"{sum(wins)} of {len(noisy)} latent noise levels {noisy}")
    return Result("decoder_denoising", "Decoding at t = 0.05 with re-noising beats decoding at t = 0 "
                  "(paper Sec. 3.1, the denoising decoder).", [f"psnr_at_noise_{level}" for level in levels], rows,
                  reproduced, verdict, {"PSNR (dB) against latent noise": curves})


ABLATIONS: dict[str, Callable[[Workspace, Settings], Result]] = {
    "rope_spacing": rope_spacing, "positions": positions, "vae_gan": vae_gan, "vae_logvar": vae_logvar,
    "decoder_denoising": decoder_denoising, "dwt_loss": dwt_loss,
}


def paired_wins(ours: dict[str, Any], theirs: dict[str, Any], key: str) -> int:
    """In how many same-seed pairs ``ours`` has the lower ``key``."""
    return sum(a < b for a, b in zip(ours["per_seed"][key], theirs["per_seed"][key]))


def strictly_lowest(values: dict[str, float]) -> str | None:
    """The name with the lowest value, or None when it ties with another (e.g. after too few steps)."""
    ordered = sorted(values, key=values.get)
    if len(ordered) > 1 and values[ordered[0]] == values[ordered[1]]:
        return None
    return ordered[0]


def _mean_spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def _mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[float, float]]:
    """The mean over seeds at the steps every seed logged."""
    steps = set.intersection(*(set(step for step, _ in curve) for curve in curves))
    by_seed = [dict(curve) for curve in curves]
    return [(float(step), statistics.fmean(seed[step] for seed in by_seed)) for step in sorted(steps)]
