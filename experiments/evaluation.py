"""Measurements of trained models on the workspace's held-out clips, as the demo's report card takes them
(each clip coded at the scale the demo trains at, 17 frames, EMA weights): reconstruction quality (PSNR,
SSIM, LPIPS with a local backbone, the high-frequency error, sharpness), what the demo-world evaluator
reads in the reconstructions, how latents spread over channels (PCA explained variance, KL per channel),
the denoising decoder on noisy latents, and the DiT's samples decoded both ways."""

from __future__ import annotations

import tarfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from torchmetrics.functional.image import (
    image_gradients,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from ltx.cli.report_card import HeldOutClip, batches_by_shape, decode_noised, read_clips
from ltx.data.latents import LATENT_EXTENSION
from ltx.evaluation.demo_world import DemoWorldEvaluator
from ltx.losses.dwt import haar_subbands_3d
from ltx.models.vae.autoencoder import VideoAutoencoder
from ltx.registry import LOSSES
from ltx.sampling import decode_latents
from ltx.training.adherence import score_videos
from ltx.training.samples import SampleSettings, generate

TRAINING_HEIGHT = 64  # the demo world's clips; the larger demo sources are coded at this height too
FRAMES = 17


@dataclass(frozen=True)
class HeldOut:
    """A held-out clip at the training scale: ``video`` `(3, F, H, W)` in [-1, 1]."""

    clip: HeldOutClip
    video: torch.Tensor


def held_out_videos(shards: Path, limit: int | None = None) -> list[HeldOut]:
    """The clips of ``shards`` (a directory of tars) at ``TRAINING_HEIGHT``, up to ``FRAMES`` frames."""
    clips = read_clips(shards)[:limit]
    if not clips:
        raise RuntimeError(f"no clips in {shards}: prepare the workspace first (python -m experiments)")
    return [HeldOut(clip, clip.video(FRAMES, height=TRAINING_HEIGHT)) for clip in clips]


def batches(videos: Sequence[HeldOut], batch_size: int = 8) -> list[list[int]]:
    """Indices of ``videos`` grouped by shape, ``batch_size`` at a time, in order."""
    return batches_by_shape([tuple(item.video.shape) for item in videos], batch_size)


def frames01(video: torch.Tensor) -> torch.Tensor:
    """`(3, F, H, W)` in [-1, 1] -> `(F, 3, H, W)` in [0, 1]."""
    return ((video.float() + 1) / 2).clamp(0, 1).transpose(0, 1)


def high_frequency_error(reconstruction: torch.Tensor, original: torch.Tensor) -> float:
    """Mean absolute difference of the 7 high-frequency subbands of a one-level 3D Haar DWT of `(3, F, H, W)`
    videos (what the paper's DWT loss targets): detail that a blurry reconstruction loses."""
    ours, theirs = haar_subbands_3d(reconstruction[None].float()), haar_subbands_3d(original[None].float())
    return float(torch.stack([(a - b).abs().mean() for a, b in zip(ours[1:], theirs[1:])]).mean())


def sharpness(reconstruction: torch.Tensor, original: torch.Tensor) -> float:
    """Mean spatial gradient magnitude of the reconstruction over the original's (torchmetrics'
    ``image_gradients``): 1 is as sharp as the original, below 1 blurred, above 1 sharper (e.g. artefacts)."""
    def energy(video: torch.Tensor) -> torch.Tensor:
        dy, dx = image_gradients(frames01(video))  # (F, 3, H, W) each
        return (dy.square() + dx.square()).sqrt().mean()

    return float(energy(reconstruction) / energy(original).clamp_min(1e-8))


def build_lpips(backbone_path: str | None) -> torch.nn.Module | None:
    """LPIPS (VGG) with a local torchvision VGG16 state dict; None without one (not downloaded)."""
    if not backbone_path:
        return None
    return LOSSES.build("lpips", net="vgg", backbone_path=backbone_path).eval()


@torch.no_grad()
def reconstruct(vae: VideoAutoencoder, videos: Sequence[HeldOut], noise_timestep: float | None = None,
                seed: int = 0) -> list[torch.Tensor]:
    """Each clip's posterior mean decoded at t=0; with ``noise_timestep`` the mean noised to it
    (``(1 - t) z + t eps``) and decoded told t. `(3, F, H, W)` in [-1, 1] each, in order."""
    vae.eval()
    generator, decoder_generator = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    outputs: list[torch.Tensor | None] = [None] * len(videos)
    for chunk in batches(videos):
        mean = vae.encode(torch.stack([videos[index].video for index in chunk])).mean  # (B, C, F', H', W')
        if noise_timestep is None:
            decoded = vae.decode(mean, 0.0 if vae.config.timestep_conditioning else None, decoder_generator)
        else:
            decoded = decode_noised(vae, mean, noise_timestep, generator, decoder_generator)
        for position, index in enumerate(chunk):
            outputs[index] = decoded[position].float().clamp(-1, 1)
    return outputs


# the metrics reconstruction_metrics always returns (lpips as None without a backbone); a cached
# measurement missing one of them is redone
RECONSTRUCTION_METRICS = ("psnr", "ssim", "lpips", "high_frequency_error", "sharpness", "sharpness_gap")


@torch.no_grad()
def reconstruction_metrics(vae: VideoAutoencoder, videos: Sequence[HeldOut], lpips: torch.nn.Module | None = None,
                           evaluator: DemoWorldEvaluator | None = None) -> dict[str, float | None]:
    """Means over the held-out clips: PSNR, SSIM (t=0 and latents noised to t=0.05 decoded at it, when the
    decoder is timestep-conditioned), LPIPS (None without a backbone), the high-frequency error, sharpness
    (the gradient ratio) and its distance from the original's (``sharpness_gap``, per clip |ratio - 1|: a
    reconstruction can miss the original's sharpness by blurring or by adding artefacts),
    and the evaluator's colour / shape / motion accuracy on the reconstructions of the world clips."""
    clean = reconstruct(vae, videos)
    totals: dict[str, list[float]] = defaultdict(list)
    for item, output in zip(videos, clean):
        ours, theirs = frames01(output), frames01(item.video)
        totals["psnr"].append(float(peak_signal_noise_ratio(ours, theirs, data_range=1.0)))
        totals["ssim"].append(float(structural_similarity_index_measure(ours, theirs, data_range=1.0)))
        totals["high_frequency_error"].append(high_frequency_error(output, item.video))
        ratio = sharpness(output, item.video)
        totals["sharpness"].append(ratio)
        totals["sharpness_gap"].append(abs(ratio - 1.0))
        if lpips is not None:
            totals["lpips"].append(float(lpips(output[None], item.video[None])))
    if vae.config.timestep_conditioning:
        for item, output in zip(videos, reconstruct(vae, videos, noise_timestep=0.05)):
            totals["psnr_t005"].append(float(peak_signal_noise_ratio(frames01(output), frames01(item.video),
                                                                     data_range=1.0)))
    world = [index for index, item in enumerate(videos) if item.clip.labels is not None]
    if world:
        result = score_videos([clean[index] for index in world], [videos[index].clip.labels for index in world],
                              evaluator)
        for name in ("colour", "shape", "motion"):
            totals[f"read_{name}"].append(result.scores[name])
    means: dict[str, float | None] = {name: sum(values) / len(values) for name, values in totals.items()}
    means.setdefault("lpips", None)
    return means


@torch.no_grad()
def latent_channel_statistics(vae: VideoAutoencoder, videos: Sequence[HeldOut]) -> dict[str, Any]:
    """PCA over the posterior means of every latent position (channels as features), as the paper's Fig. 3:
    each principal component's explained-variance ratio, largest first, and their running sum; the
    components needed for 90 % and 99 % of the variance; the KL to N(0, 1) per channel (mean over positions)
    and its largest over its mean (1: spread evenly)."""
    vae.eval()
    means, kls = [], []
    for chunk in batches(videos):
        posterior = vae.encode(torch.stack([videos[index].video for index in chunk]))
        channels = posterior.mean.shape[1]
        means.append(posterior.mean.transpose(0, 1).reshape(channels, -1))  # (C, positions)
        kl = 0.5 * (posterior.mean.pow(2) + posterior.logvar.exp() - 1.0 - posterior.logvar)  # (B, C, F', H', W')
        kls.append(kl.transpose(0, 1).reshape(channels, -1))
    latents = torch.cat(means, dim=1).double()  # (C, N)
    if latents.shape[1] < 2:
        raise ValueError(f"PCA needs at least 2 latent positions, got {latents.shape[1]}: give more clips")
    centred = latents - latents.mean(dim=1, keepdim=True)
    covariance = centred @ centred.T / (centred.shape[1] - 1)  # (C, C)
    eigenvalues = torch.linalg.eigvalsh(covariance).flip(0).clamp_min(0)
    ratio = eigenvalues / eigenvalues.sum()
    cumulative = ratio.cumsum(0)
    kl_per_channel = torch.cat(kls, dim=1).mean(dim=1)  # (C,)
    return {
        "positions": latents.shape[1],
        "explained_variance_ratio": ratio.tolist(),
        "cumulative_explained_variance": cumulative.tolist(),
        "components_for_90_percent": int((cumulative < 0.9).sum()) + 1,
        "components_for_99_percent": int((cumulative < 0.99).sum()) + 1,
        "kl_per_channel": kl_per_channel.tolist(),
        "kl_max_over_mean": float(kl_per_channel.max() / kl_per_channel.mean().clamp_min(1e-12)),
    }


@torch.no_grad()
def noisy_latent_psnr(vae: VideoAutoencoder, videos: Sequence[HeldOut], noise_levels: Sequence[float],
                      decode_timestep: float, renoise_scale: float, seed: int = 0) -> dict[str, float]:
    """Mean PSNR of decoding latents that carry noise ``z_s = (1 - s) z + s eps`` (what a sampler leaves):
    as clean (timestep 0) against the release's way (re-noise by ``renoise_scale``, decode at
    ``decode_timestep``, as ``ltx.sampling.decode_latents`` does with a DiT's latents). Keys ``"<s>/clean"``
    and ``"<s>/denoise"``. The decoder must be timestep-conditioned."""
    if not vae.config.timestep_conditioning:
        raise ValueError("the denoising decoder needs a timestep-conditioned VAE (model.vae timestep_conditioning)")
    vae.eval()
    generator = torch.Generator().manual_seed(seed)
    totals: dict[str, list[float]] = defaultdict(list)
    for level in noise_levels:
        for chunk in batches(videos):
            originals = torch.stack([videos[index].video for index in chunk])
            latents = vae.encode(originals).mean
            noisy = (1 - level) * latents + level * torch.randn(latents.shape, generator=generator)
            renoised = (1 - renoise_scale) * noisy + renoise_scale * torch.randn(noisy.shape, generator=generator)
            decoded = {"clean": vae.decode(noisy, 0.0, generator), "denoise": vae.decode(renoised, decode_timestep, generator)}
            for mode, output in decoded.items():
                for position in range(len(chunk)):
                    totals[f"{level}/{mode}"].append(float(peak_signal_noise_ratio(
                        frames01(output[position].float().clamp(-1, 1)), frames01(originals[position]), data_range=1.0)))
    return {key: sum(values) / len(values) for key, values in totals.items()}


@torch.no_grad()
def sampled_latents_decoded_both_ways(module, prompts: Sequence, settings: SampleSettings, batch_size: int = 8
                                      ) -> dict[str, dict[str, float]]:
    """Sample ``prompts`` (``DemoPrompt``) with a DiT module's transformer, then decode the same final latents
    at t=0 without re-noising and the release's way (``settings``' decode timestep and re-noise scale);
    the evaluator's accuracies of each (``{"clean": scores, "denoise": scores}``)."""
    videos: dict[str, list[torch.Tensor]] = {"clean": [], "denoise": []}
    for batch, start in enumerate(range(0, len(prompts), batch_size)):
        chunk = [prompt.caption for prompt in prompts[start : start + batch_size]]
        chunk_settings = SampleSettings(**{**settings.__dict__, "seed": settings.seed + batch})
        latents = generate(module.transformer, module.vae, module.text_encoder, chunk, chunk_settings,
                           return_latents=True)
        generator = torch.Generator().manual_seed(settings.seed + batch)
        videos["clean"].append(decode_latents(module.vae, latents, 0.0, 0.0, generator=generator).cpu())
        videos["denoise"].append(decode_latents(module.vae, latents, settings.decode_timestep, settings.renoise_scale,
                                                generator=generator).cpu())
    return {mode: score_videos(torch.cat(decoded), list(prompts)).scores for mode, decoded in videos.items()}


def zero_prediction_loss(shards: Path) -> float:
    """The flow loss of predicting zero velocity on the latents of ``shards`` (``*.tar`` of
    ``ltx.data.latents``): with ``v = eps - x0`` and unit Gaussian noise, ``1 + E[x0^2]`` (each clip's mean
    over its elements, then over clips). A DiT whose validation loss there is above it has learned nothing
    that carries over to those latents."""
    squares = []
    for shard in sorted(Path(shards).glob("*.tar")):
        with tarfile.open(shard) as archive:
            for member in archive.getmembers():
                if member.name.endswith(f".{LATENT_EXTENSION}"):
                    latents = load_safetensors(archive.extractfile(member).read())["latents"]
                    squares.append(float(latents.double().pow(2).mean()))
    if not squares:
        raise FileNotFoundError(f"no latent samples (*.{LATENT_EXTENSION}) in the shards of {shards}")
    return 1.0 + sum(squares) / len(squares)
