"""Measurements of trained models on held-out demo clips: reconstruction quality (PSNR, SSIM, LPIPS
with local backbone weights, high-frequency error), how latents spread over channels (PCA explained
variance, KL per channel), and the denoising decoder on noisy latents."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from experiments.runs import compose
from ltx.losses.dwt import haar_subbands_3d
from ltx.models.vae.autoencoder import VideoAutoencoder
from ltx.registry import LOSSES


def demo_videos(demo_dir: Path, split: str = "val") -> list[torch.Tensor]:
    """The demo's held-out samples (``split="shards"``: its training samples) as `(B, 3, F, H, W)`
    batches in [-1, 1] (centre crops, the demo buckets), in a fixed order."""
    cfg = compose("train_vae", [f"data.train_shards={demo_dir / 'shards'}", f"data.val_shards={demo_dir / split}"])
    datamodule = instantiate(cfg.data, num_workers=0)
    videos = []
    for batch in datamodule.make_loader(datamodule.val_shards, resampled=False, random=False):
        videos.append(batch["video"])
    if not videos:
        raise RuntimeError(f"no held-out videos in {demo_dir / 'val'}")
    return videos


def frames01(video: torch.Tensor) -> torch.Tensor:
    """`(B, 3, F, H, W)` in [-1, 1] -> `(B*F, 3, H, W)` in [0, 1]."""
    return ((video.float() + 1) / 2).clamp(0, 1).transpose(1, 2).flatten(0, 1)


def high_frequency_error(reconstruction: torch.Tensor, original: torch.Tensor) -> float:
    """Mean absolute difference of the 7 high-frequency subbands of a one-level 3D Haar DWT (what the
    paper's DWT loss targets): detail that a blurry reconstruction loses."""
    ours, theirs = haar_subbands_3d(reconstruction.float()), haar_subbands_3d(original.float())
    return float(torch.stack([(a - b).abs().mean() for a, b in zip(ours[1:], theirs[1:])]).mean())


def build_lpips(backbone_path: str | None) -> torch.nn.Module | None:
    """LPIPS (VGG) with a local torchvision VGG16 state dict; None without one (not downloaded)."""
    if not backbone_path:
        return None
    return LOSSES.build("lpips", net="vgg", backbone_path=backbone_path).eval()


@torch.no_grad()
def reconstruction_metrics(vae: VideoAutoencoder, videos: Iterable[torch.Tensor],
                           lpips: torch.nn.Module | None = None) -> dict[str, float | None]:
    """Encode (posterior mean) and decode (clean, timestep 0) each batch: PSNR and SSIM over frames,
    LPIPS when a backbone is given, the high-frequency error; means over batches."""
    vae.eval()
    generator = torch.Generator().manual_seed(0)
    totals: dict[str, list[float]] = {"psnr": [], "ssim": [], "lpips": [], "high_frequency_error": []}
    for video in videos:
        reconstruction = decode_clean(vae, vae.encode(video).mean, generator)
        totals["psnr"].append(float(peak_signal_noise_ratio(frames01(reconstruction), frames01(video), data_range=1.0)))
        totals["ssim"].append(float(structural_similarity_index_measure(frames01(reconstruction), frames01(video),
                                                                        data_range=1.0)))
        totals["high_frequency_error"].append(high_frequency_error(reconstruction, video))
        if lpips is not None:
            totals["lpips"].append(float(lpips(reconstruction, video)))
    return {name: (sum(values) / len(values) if values else None) for name, values in totals.items()}


def decode_clean(vae: VideoAutoencoder, latents: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Decode as if the latents were clean (timestep 0); ``generator`` draws the decoder's injected noise,
    so a measurement repeats exactly."""
    timestep = 0.0 if vae.config.timestep_conditioning else None
    return vae.decode(latents, timestep, generator).float().clamp(-1, 1)


@torch.no_grad()
def latent_channel_statistics(vae: VideoAutoencoder, videos: Iterable[torch.Tensor]) -> dict[str, Any]:
    """PCA over the posterior means of every latent position (channels as features), as the paper's
    Fig. 3: the explained-variance ratio of each principal component, largest first, and its running
    sum; and the KL to N(0, 1) per channel (mean over positions)."""
    vae.eval()
    means, kls = [], []
    for video in videos:
        posterior = vae.encode(video)
        channels = posterior.mean.shape[1]
        means.append(posterior.mean.transpose(0, 1).reshape(channels, -1))  # (C, positions)
        kl = 0.5 * (posterior.mean.pow(2) + posterior.logvar.exp() - 1.0 - posterior.logvar)  # (B, C, F', H', W')
        kls.append(kl.transpose(0, 1).reshape(channels, -1))
    latents = torch.cat(means, dim=1).double()  # (C, N)
    centred = latents - latents.mean(dim=1, keepdim=True)
    covariance = centred @ centred.T / max(1, centred.shape[1] - 1)  # (C, C)
    eigenvalues = torch.linalg.eigvalsh(covariance).flip(0).clamp_min(0)
    ratio = eigenvalues / eigenvalues.sum()
    cumulative = ratio.cumsum(0)
    kl_per_channel = torch.cat(kls, dim=1).mean(dim=1)  # (C,)
    return {
        "explained_variance_ratio": ratio.tolist(),
        "cumulative_explained_variance": cumulative.tolist(),
        "components_for_90_percent": int((cumulative < 0.9).sum()) + 1,
        "components_for_99_percent": int((cumulative < 0.99).sum()) + 1,
        "kl_per_channel": kl_per_channel.tolist(),
        "kl_max_over_mean": float(kl_per_channel.max() / kl_per_channel.mean().clamp_min(1e-12)),
    }


@torch.no_grad()
def noisy_latent_reconstruction(vae: VideoAutoencoder, videos: list[torch.Tensor], noise_levels: Iterable[float],
                                decode_timestep: float, renoise_scale: float, seed: int = 0) -> dict[str, float]:
    """PSNR of decoding latents that carry noise ``z_s = (1 - s) z + s eps`` (what a sampler leaves):
    clean decoding (timestep 0, as a decoder without denoising) against the release's way (re-noise by
    ``renoise_scale``, decode at ``decode_timestep``). Keys ``"<s>/clean"`` and ``"<s>/denoise"``."""
    vae.eval()
    generator = torch.Generator().manual_seed(seed)
    results: dict[str, list[float]] = {}
    for level in noise_levels:
        for video in videos:
            latents = vae.encode(video).mean
            noisy = (1 - level) * latents + level * torch.randn(latents.shape, generator=generator)
            clean = decode_clean(vae, noisy, generator)
            renoised = (1 - renoise_scale) * noisy + renoise_scale * torch.randn(noisy.shape, generator=generator)
            denoised = vae.decode(renoised, decode_timestep, generator).float().clamp(-1, 1)
            for name, output in (("clean", clean), ("denoise", denoised)):
                psnr = float(peak_signal_noise_ratio(frames01(output), frames01(video), data_range=1.0))
                results.setdefault(f"{level}/{name}", []).append(psnr)
    return {key: sum(values) / len(values) for key, values in results.items()}


