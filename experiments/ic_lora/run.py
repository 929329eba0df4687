"""IC-LoRA on the demo world: the reference is a clip in grey, the target the same clip in colour. A LoRA on
the demo DiT learns the mapping; scored on held-out clips by how close the sample is to the colour clip.

Needs a finished `make demo` (its VAE, latent statistics, text encoder, world shards and its DiT's EMA export,
the LoRA's frozen base). Writes into --out: grey/colour pair shards, their latents (with reference_latents),
the LoRA run, and results.json.

    python -m experiments.ic_lora.run --demo outputs/demo --out outputs/ic_lora --steps 600
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from safetensors.torch import load as load_safetensors
from torchmetrics.functional.image import peak_signal_noise_ratio

from ltx.cli.sample import load_dit_module
from ltx.data.schema import ClipMetadata
from ltx.data.shards import ShardSample, write_shards
from ltx.data.video_io import decode_frames, encode_mp4, probe_video
from ltx.training.samples import SampleSettings, generate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=Path("outputs/demo"), help="a finished `make demo` folder")
    parser.add_argument("--out", type=Path, default=Path("outputs/ic_lora"))
    parser.add_argument("--train-clips", type=int, default=1000, help="world clips made into grey/colour pairs")
    parser.add_argument("--eval-clips", type=int, default=24, help="held-out clips scored")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def grey_pairs(shards: list[str], limit: int) -> list[ShardSample]:
    """Video samples of ``shards`` with their grey version as the reference clip."""
    samples = []
    for record in wds.WebDataset(shards, shardshuffle=False):
        if "mp4" not in record:
            continue
        info = probe_video(record["mp4"])
        frames = decode_frames(record["mp4"], list(range(info.num_frames)))  # (N, h, w, 3)
        grey = np.repeat(frames.mean(axis=-1, keepdims=True).round().astype(np.uint8), 3, axis=-1)
        samples.append(ShardSample(record["__key__"], record["mp4"], "mp4", record["txt"].decode("utf-8"),
                                   ClipMetadata.from_json(record["json"]), reference=encode_mp4(list(grey), fps=info.fps)))
        if len(samples) == limit:
            break
    if not samples:
        raise FileNotFoundError(f"no video samples in {shards}: run `make demo` first")
    return samples


def run_module(module: str, *arguments: str) -> None:
    subprocess.run([sys.executable, "-m", module, *arguments], check=True)


def latent_pairs(folder: Path, limit: int) -> list[dict[str, torch.Tensor | str]]:
    """The first ``limit`` precomputed pairs: latents, reference_latents, caption."""
    pairs = []
    for path in sorted(folder.glob("*.tar")):
        with tarfile.open(path) as tar:
            members = {member.name: member for member in tar.getmembers()}
            for name, member in members.items():
                if name.endswith(".latents.safetensors"):
                    tensors = load_safetensors(tar.extractfile(member).read())
                    caption = tar.extractfile(members[name.replace(".latents.safetensors", ".txt")]).read().decode()
                    pairs.append({"latents": tensors["latents"], "reference": tensors["reference_latents"],
                                  "caption": caption})
                    if len(pairs) == limit:
                        return pairs
    return pairs


@torch.no_grad()
def score(module, pairs: list[dict], use_reference: bool, seed: int) -> dict[str, float]:
    """PSNR of the samples against the decoded colour targets, and how grey the samples are (channel spread)."""
    settings = SampleSettings(frames=17, height=64, width=64, num_steps=20, seed=seed)
    psnrs, spreads = [], []
    for pair in pairs:
        reference = pair["reference"][None] if use_reference else None
        video = generate(module.transformer, module.vae, module.text_encoder, [pair["caption"]], settings,
                         reference=reference)  # (1, 3, F, H, W)
        target = module.vae.decode(module.vae.denormalize_latents(pair["latents"][None]), 0.0).clamp(-1, 1)
        psnrs.append(peak_signal_noise_ratio(video.clamp(-1, 1), target, data_range=2.0).item())
        spreads.append(video.std(dim=1).mean().item())
    return {"psnr_db": float(np.mean(psnrs)), "channel_spread": float(np.mean(spreads))}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    demo, out = args.demo.resolve(), args.out.resolve()
    vae, stats = demo / "vae_run" / "checkpoints" / "last.ckpt", demo / "latent_stats.safetensors"
    base = demo / "dit_run" / "export" / "transformer"
    if not base.exists():
        raise FileNotFoundError(f"{base} is missing: run `make demo DEMO_DIR={demo}` first")
    write_shards(grey_pairs(sorted(str(p) for p in (demo / "world" / "shards").glob("*.tar")), args.train_clips),
                 out / "pairs" / "train", samples_per_shard=250)
    write_shards(grey_pairs(sorted(str(p) for p in (demo / "val").glob("*.tar")), args.eval_clips),
                 out / "pairs" / "val", samples_per_shard=250)
    common = [f"demo_dir={demo}", f"vae_checkpoint={vae}", f"model.vae.latent_stats={stats}"]
    run_module("ltx.cli.precompute", "data=demo_world", *common, f"data.train_shards={out / 'pairs' / 'train'}",
               f"data.val_shards={out / 'pairs' / 'val'}", "data.buckets=[[17,64,64]]", "data.shard_weights=null",
               f"output={out / 'latents'}", f"run_dir={out / 'logs'}", "samples_per_shard=250")
    started = time.perf_counter()
    run_module("ltx.cli.train", "--config-name", "train_dit", "experiment=dit_demo", *common,
               f"run_dir={out / 'lora_run'}", f"data.train_shards={out / 'latents' / 'train'}",
               f"data.val_shards={out / 'latents' / 'val'}", "finetune=lora", f"finetune.rank={args.rank}",
               f"finetune.alpha={float(args.rank)}", f"model.dit.pretrained={base}", f"trainer.max_steps={args.steps}",
               f"optimizer.lr={args.lr}", "scheduler.warmup_steps=20", "dit_training.samples=null",
               "~callbacks.adherence", "dit_training.conditioning.first_frame_probability=0.0",
               f"data.batches_per_epoch={max(1, args.steps // 2)}", f"seed={args.seed}")
    seconds = time.perf_counter() - started
    pairs = latent_pairs(out / "latents" / "val", args.eval_clips)
    base_module = load_dit_module(demo / "dit_run" / "checkpoints" / "last.ckpt")
    lora_module = load_dit_module(out / "lora_run" / "checkpoints" / "last.ckpt")
    results = {
        "clips": len(pairs), "steps": args.steps, "rank": args.rank, "train_seconds": round(seconds, 1),
        "base_text_only": score(base_module, pairs, use_reference=False, seed=args.seed),
        "base_with_reference": score(base_module, pairs, use_reference=True, seed=args.seed),
        "lora_with_reference": score(lora_module, pairs, use_reference=True, seed=args.seed),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
