"""Inpainting with the demo DiT: the left half of each held-out clip is given (spatial-mask conditioning), the
right half generated. Scores the decoded sample against the input clip on each half: the given half should
match it (up to the VAE), the generated half should not be a copy of it.

Needs a finished `make demo`. Prints JSON and writes it to --out.

    python -m experiments.inpainting.run --demo outputs/demo --out outputs/inpainting.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torchmetrics.functional.image import peak_signal_noise_ratio

from ltx.cli.sample import load_dit_module
from ltx.data.buckets import Bucket
from ltx.data.transforms import resize_and_crop
from ltx.data.video_io import decode_frames, probe_video
from ltx.sampling import region_conditioning
from ltx.training.samples import SampleSettings, generate


def held_out_clips(demo: Path, count: int) -> list[tuple[torch.Tensor, str]]:
    """Held-out 17 x 64 x 64 clips `(1, 3, 17, 64, 64)` in [-1, 1] with their captions."""
    clips = []
    for record in wds.WebDataset(sorted(str(p) for p in (demo / "val").glob("*.tar")), shardshuffle=False):
        if "mp4" not in record or probe_video(record["mp4"]).num_frames < 17:
            continue
        frames = decode_frames(record["mp4"], list(range(17)))
        clips.append((resize_and_crop(frames, Bucket(17, 64, 64), rng=None)[None], record["txt"].decode("utf-8")))
        if len(clips) == count:
            break
    return clips


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    module = load_dit_module(args.demo / "dit_run" / "checkpoints" / "last.ckpt")
    keep = torch.zeros(64, 64, dtype=torch.bool)
    keep[:, :32] = True  # the left half: latent column 0 of 2
    settings = SampleSettings(frames=17, height=64, width=64, num_steps=20)
    rows = {"given_vs_input": [], "generated_vs_input": [], "reconstruction_given": []}
    for clip, caption in held_out_clips(args.demo, args.clips):
        conditioning = region_conditioning(module.vae, clip, keep)
        video = generate(module.transformer, module.vae, module.text_encoder, [caption], settings,
                         conditioning=conditioning).clamp(-1, 1)  # (1, 3, 17, 64, 64)
        reconstruction = module.vae.decode(module.vae.denormalize_latents(conditioning.latents), 0.0).clamp(-1, 1)
        psnr = lambda a, b: peak_signal_noise_ratio(a, b, data_range=2.0).item()  # noqa: E731
        rows["given_vs_input"].append(psnr(video[..., :32], clip[..., :32]))
        rows["generated_vs_input"].append(psnr(video[..., 32:], clip[..., 32:]))
        rows["reconstruction_given"].append(psnr(reconstruction[..., :32], clip[..., :32]))
    results = {"clips": len(rows["given_vs_input"]), **{k: round(float(np.mean(v)), 2) for k, v in rows.items()}}
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
