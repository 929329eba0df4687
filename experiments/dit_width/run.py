"""How big must the demo's DiT be? A bare training loop (no Lightning) on the demo's precomputed latents,
scored by sampling held-out prompts and reading them back with the demo-world evaluator.

Needs a finished `make demo` (its DiT checkpoint supplies the VAE, text encoder and data settings; the
transformer itself is rebuilt from scratch with the preset and overrides given here). Prints JSON lines:
one per evaluation, and a final one with the training time.

    python -m experiments.dit_width.run --preset demo --steps 3000 --lr 2e-3
    python -m experiments.dit_width.run --preset tiny --overrides '{"num_layers": 4}'
"""

from __future__ import annotations

import argparse
import json
import tarfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

from ltx.cli.sample import load_dit_module
from ltx.evaluation import held_out_prompts
from ltx.training.adherence import sample_videos, score_videos
from ltx.training.dit_module import build_dit
from ltx.training.ema import EMAWeights
from ltx.training.samples import SampleSettings
from ltx.training.schedules import build_lr_scheduler


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=Path("outputs/demo"), help="a finished `make demo` folder")
    parser.add_argument("--preset", default="demo", help="DiT preset to train from scratch")
    parser.add_argument("--overrides", default="{}", help="JSON of DiT config fields over the preset")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--min-lr-ratio", type=float, default=0.05, help="cosine decay floor")
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--eval-every", type=int, default=1500)
    parser.add_argument("--prompts", type=int, default=72, help="held-out prompts per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load_latent_buckets(folder: Path) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Every precomputed training sample, stacked per latent shape: [(latents, text, text_mask)]."""
    groups: dict[tuple[int, ...], list[dict[str, torch.Tensor]]] = defaultdict(list)
    paths = sorted(folder.glob("*.tar"))
    if not paths:
        raise FileNotFoundError(f"no latent shards in {folder}: run `make demo` first")
    for path in paths:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".latents.safetensors"):
                    sample = load_safetensors(tar.extractfile(member).read())
                    groups[tuple(sample["latents"].shape)].append(sample)
    return [tuple(torch.stack([s[key] for s in samples]) for key in ("latents", "text", "text_mask"))
            for samples in groups.values()]


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    module = load_dit_module(str(args.demo / "dit_run/checkpoints/last.ckpt"), use_ema=True)
    dit_cfg = module.cfg.model.dit
    dit_cfg.preset = args.preset
    dit_cfg.overrides = json.loads(args.overrides) or None
    module.transformer = build_dit(dit_cfg).train()
    buckets = load_latent_buckets(args.demo / "latents/train")
    sizes = torch.tensor([len(latents) for latents, _, _ in buckets], dtype=torch.float)
    parameters = list(module.transformer.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0)

    scheduler = build_lr_scheduler(optimizer, {"name": "cosine", "warmup_steps": args.warmup,
                                               "total_steps": args.steps, "min_lr_ratio": args.min_lr_ratio})
    ema = EMAWeights(module.transformer, args.ema)
    generator = torch.Generator().manual_seed(args.seed)
    prompts = held_out_prompts(args.prompts)
    settings = SampleSettings(frames=17, height=64, width=64, fps=24.0, num_steps=20, guidance_scale=3.0, seed=0)
    dropout = float(module.training_cfg.text_dropout)
    null_text, null_mask = module.null_text(args.batch, torch.device("cpu"))  # (B, L, D), (B, L): encoded once
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                      "parameters": sum(p.numel() for p in parameters)}), flush=True)
    train_seconds, smoothed_loss, started = 0.0, None, time.time()
    for step in range(args.steps):
        latents, text, mask = buckets[int(torch.multinomial(sizes, 1, generator=generator))]
        index = torch.randint(len(latents), (args.batch,), generator=generator)
        text, mask = text[index].clone(), mask[index].clone()
        dropped = torch.rand(args.batch, generator=generator) < dropout
        text[dropped], mask[dropped] = null_text[dropped], null_mask[dropped]
        randomness = module.batch_randomness(args.batch, torch.device("cpu"), seed=args.seed, step=step)
        loss, _, _ = module.flow_loss(latents[index], text, mask, torch.full((args.batch,), 24.0), randomness,
                                      conditioned=True, drop_tokens=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        ema.update(module.transformer)
        smoothed_loss = loss.item() if smoothed_loss is None else 0.98 * smoothed_loss + 0.02 * loss.item()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            train_seconds += time.time() - started
            ema.swap(module.transformer)
            module.transformer.eval()
            videos = sample_videos(module.transformer, module.vae, module.text_encoder,
                                   [prompt.caption for prompt in prompts], settings, 8)
            scores = score_videos(videos, prompts).scores
            ema.swap(module.transformer)
            module.transformer.train()
            print(json.dumps({"step": step + 1, "train_loss": round(smoothed_loss, 4),
                              "train_seconds": round(train_seconds, 1),
                              **{key: round(value, 4) for key, value in scores.items()}}), flush=True)
            started = time.time()


if __name__ == "__main__":
    main()
