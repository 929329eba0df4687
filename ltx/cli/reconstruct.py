"""Reconstruct a video through a VAE: ``python -m ltx.cli.reconstruct IN.mp4 OUT.mp4 --checkpoint CKPT``.

The input is cut to the longest 8k+1 frames (or ``--frames``), resized and centre-cropped to
multiples of 32 (or ``--size HxW``); the reconstruction (or, with ``--side-by-side``, original and
reconstruction) is written as H.264 mp4 and PSNR / SSIM are printed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from ltx.data.buckets import Bucket
from ltx.data.transforms import resize_and_crop
from ltx.data.video_io import decode_frames, encode_mp4, probe_video
from ltx.interop.diffusers import load_vae
from ltx.models.vae import VideoAutoencoder
from ltx.training.build import vae_from_checkpoint
from ltx.training.previews import side_by_side, to_uint8_frames


@dataclass(frozen=True)
class ReconstructionResult:
    psnr: float
    ssim: float
    frames: int
    height: int
    width: int


def target_shape(num_frames: int, height: int, width: int, frames: int | None, size: tuple[int, int] | None) -> Bucket:
    """The shape to reconstruct at: the longest 8k+1 frames and the largest multiples of 32 that fit."""
    frames = frames or 1 + 8 * ((num_frames - 1) // 8)
    if frames > num_frames:
        raise ValueError(f"the video has {num_frames} frames, {frames} were asked for")
    target_height, target_width = size or (32 * (height // 32), 32 * (width // 32))
    if target_height < 32 or target_width < 32:
        raise ValueError(f"the video is {width}x{height}; the VAE needs at least 32x32")
    return Bucket(frames, target_height, target_width)


@torch.no_grad()
def reconstruct_file(vae: VideoAutoencoder, source: Path, output: Path, frames: int | None = None,
                     size: tuple[int, int] | None = None, timestep: float = 0.0, side: bool = False) -> ReconstructionResult:
    data = source.read_bytes()
    info = probe_video(data)
    shape = target_shape(info.num_frames, info.height, info.width, frames, size)
    video = resize_and_crop(decode_frames(data, list(range(shape.frames))), shape, rng=None)[None]  # (1, 3, F, H, W)
    device = next(vae.parameters()).device
    video = video.to(device)
    latents = vae.encode(video).mean
    noisy_timestep = timestep if vae.config.timestep_conditioning else None
    reconstruction = vae.decode(latents, noisy_timestep).clamp(-1, 1)  # (1, 3, F, H, W)
    original01 = ((video + 1) / 2).transpose(1, 2).flatten(0, 1)  # (F, 3, H, W)
    reconstruction01 = ((reconstruction + 1) / 2).transpose(1, 2).flatten(0, 1)
    psnr = peak_signal_noise_ratio(reconstruction01, original01, data_range=1.0).item()
    ssim = structural_similarity_index_measure(reconstruction01, original01, data_range=1.0).item()
    movie = side_by_side(video, reconstruction) if side else reconstruction[0]  # (3, F, H, W')
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(encode_mp4(list(to_uint8_frames(movie)), fps=info.fps or 24.0))
    return ReconstructionResult(psnr, ssim, shape.frames, shape.height, shape.width)


def load_model(checkpoint: str | None, vae_dir: str | None, use_ema: bool) -> VideoAutoencoder:
    if bool(checkpoint) == bool(vae_dir):
        raise SystemExit("give exactly one of --checkpoint (a VAE-stage .ckpt) or --vae (a diffusers-layout directory)")
    return (vae_from_checkpoint(checkpoint, use_ema) if checkpoint else load_vae(vae_dir)).eval()


def parse_size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    return int(height), int(width)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--checkpoint", help="a VAE-stage Lightning checkpoint")
    parser.add_argument("--vae", help="a diffusers-layout VAE directory")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    parser.add_argument("--frames", type=int, help="frames to reconstruct (8k+1)")
    parser.add_argument("--size", type=parse_size, help="HxW, multiples of 32")
    parser.add_argument("--timestep", type=float, default=0.0, help="decoder timestep (denoising decoders)")
    parser.add_argument("--side-by-side", action="store_true", help="write original and reconstruction side by side")
    args = parser.parse_args(argv)
    vae = load_model(args.checkpoint, args.vae, not args.no_ema)
    result = reconstruct_file(vae, args.input, args.output, args.frames, args.size, args.timestep, args.side_by_side)
    print(f"{args.input} -> {args.output}: {result.frames} frames at {result.width}x{result.height}, "
          f"PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.4f}")


if __name__ == "__main__":
    main()
