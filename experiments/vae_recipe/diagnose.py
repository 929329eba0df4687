"""Where a trained tiny VAE's reconstruction error is, and what its latents carry.

``python -m experiments.vae_recipe.diagnose VAE.safetensors [--enc ...] [--dec ...] [--no-tc]`` loads a state dict
written by ``explore.py --save`` and prints one JSON line:

- the error split between the moving shape's pixels and the background on explore.py's 16 held-out clips
  (PSNR over all pixels, over each part, and what the total would be with a perfect background), per
  background kind, and for the first frame (encoded alone by the causal encoder, 1:24) against the rest;
- linear probes (ridge regression on the first frame's latent means, 450 training / 150 test still scenes):
  how well the shape's colour and kind can be read from the latents.
A high probe accuracy with a low shape PSNR says the encoder passes the shape on and the decoder does not draw it.
"""

from __future__ import annotations

import argparse
import json
import math
import random

import numpy as np
import torch

from data_pipeline.demo import SceneSpec, render_background, render_scene
from experiments.vae_recipe.explore import MOVING, use_legacy_world
from ltx.evaluation.demo_vocabulary import BACKGROUNDS, COLOURS, SHAPES
from ltx.models.vae import VideoAutoencoder, vae_config


def _video(scene: SceneSpec, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(3, F, H, W)` in [-1, 1] and the shape's pixels `(F, H, W)` (where the frame differs from its background)."""
    frames = np.stack(list(render_scene(scene, size, size)))  # (F, H, W, 3)
    background = render_background(scene.background, scene.background_colour, size, size)
    mask = torch.from_numpy((frames != background[None]).any(-1))
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1, mask


def held_out_clips(frames: int = 9, size: int = 64, count: int = 16):
    """explore.py's held-out clips (same seed and draw order), with their shape masks and scenes."""
    rng = random.Random(12345)
    videos, masks, scenes = [], [], []
    for _ in range(count):
        colour = rng.choice(list(COLOURS))
        background_colour = rng.choice([name for name in COLOURS if name != colour])
        scene = SceneSpec(rng.choice(SHAPES), colour, rng.choice(MOVING + ["still"]), rng.choice(BACKGROUNDS),
                          background_colour, frames)
        video, mask = _video(scene, size)
        videos.append(video)
        masks.append(mask)
        scenes.append(scene)
    return torch.stack(videos), torch.stack(masks), scenes


def _psnr(squared_error: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    mse = squared_error.mean() if weights is None else (squared_error * weights).sum() / weights.sum()
    return round(-10 * math.log10(mse.item()), 2)


def error_split(vae: VideoAutoencoder, timestep: float | None) -> dict:
    videos, masks, scenes = held_out_clips()
    with torch.no_grad():
        reconstruction = vae.decode(vae.encode(videos).mean, timestep).clamp(-1, 1)
    error = ((reconstruction - videos) / 2).pow(2).mean(1)  # (B, F, H, W), pixel values in [0, 1]
    shape = masks.float()
    return {
        "psnr": _psnr(error), "psnr_shape_pixels": _psnr(error, shape), "psnr_background_pixels": _psnr(error, 1 - shape),
        "shape_pixel_share": round(shape.mean().item(), 3),
        "shape_error_share": round(((error * shape).sum() / error.sum()).item(), 3),
        "psnr_with_perfect_background": round(-10 * math.log10(((error * shape).sum() / error.numel()).item()), 2),
        "psnr_first_frame": _psnr(error[:, :1]), "psnr_later_frames": _psnr(error[:, 1:]),
        "psnr_per_background": {kind: _psnr(error[[i for i, s in enumerate(scenes) if s.background == kind]])
                                for kind in BACKGROUNDS if any(s.background == kind for s in scenes)},
    }


def _ridge_accuracy(features: torch.Tensor, labels: torch.Tensor, classes: int, train: int) -> float:
    features = torch.cat([features, torch.ones(len(features), 1)], dim=1)  # (N, D + 1) with a bias column
    targets = torch.nn.functional.one_hot(labels, classes).float()
    gram = features[:train].T @ features[:train] + 1e-2 * torch.eye(features.shape[1])
    weights = torch.linalg.solve(gram, features[:train].T @ targets[:train])  # (D + 1, classes)
    return round((features[train:] @ weights).argmax(1).eq(labels[train:]).float().mean().item(), 3)


def latent_probes(vae: VideoAutoencoder, count: int = 600, train: int = 450, size: int = 64) -> dict:
    rng = random.Random(7)
    colours = list(COLOURS)
    latents, colour_labels, shape_labels = [], [], []
    for _ in range(count):
        colour = rng.choice(colours)
        background_colour = rng.choice([name for name in colours if name != colour])
        shape = rng.choice(SHAPES)
        scene = SceneSpec(shape, colour, "still", rng.choice(BACKGROUNDS), background_colour, 1)
        with torch.no_grad():
            latents.append(vae.encode(_video(scene, size)[0][None]).mean.flatten())  # (C * 1 * 2 * 2,)
        colour_labels.append(colours.index(colour))
        shape_labels.append(SHAPES.index(shape))
    features = torch.stack(latents)
    return {"colour_probe_accuracy": _ridge_accuracy(features, torch.tensor(colour_labels), len(colours), train),
            "shape_probe_accuracy": _ridge_accuracy(features, torch.tensor(shape_labels), len(SHAPES), train),
            "chance": {"colour": round(1 / len(colours), 3), "shape": round(1 / len(SHAPES), 3)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="a state dict written by explore.py --save")
    parser.add_argument("--enc", default="16,32,64,64")
    parser.add_argument("--dec", default="32,64,128")
    parser.add_argument("--upsample-factor", default="2,2,2")
    parser.add_argument("--no-tc", action="store_true", help="the VAE was trained without timestep conditioning")
    parser.add_argument("--shape-half-size", type=float, default=None)
    parser.add_argument("--legacy-world", action="store_true", help="the world before session 7 (explore.py)")
    args = parser.parse_args()
    import data_pipeline.demo as renderer

    if args.legacy_world:
        use_legacy_world()
    if args.shape_half_size is not None:
        renderer.SHAPE_HALF_SIZE = args.shape_half_size
    from safetensors.torch import load_file

    config = vae_config("tiny", block_out_channels=tuple(int(x) for x in args.enc.split(",")),
                        decoder_block_out_channels=tuple(int(x) for x in args.dec.split(",")),
                        upsample_factor=tuple(int(x) for x in args.upsample_factor.split(",")),
                        noise_injection=False, timestep_conditioning=not args.no_tc)
    vae = VideoAutoencoder(config)
    vae.load_state_dict(load_file(args.weights))
    vae.eval()
    print(json.dumps({**error_split(vae, None if args.no_tc else 0.0), **latent_probes(vae)}))


if __name__ == "__main__":
    main()
