"""Bare training loops of the tiny LTX VAE (1:192) on demo-world clips: what makes it learn at small scale.

Each run trains on fresh random clips (or a fixed batch) and prints JSON lines: held-out PSNR over steps,
then a summary. ``python -m experiments.vae_recipe.explore --steps 1500 --lr 5e-4 --cosine --batch 8
--zero-res --id-down --zero-up --tag shortcut`` (see README.md for the runs behind the table).
The flags ``--zero-res --id-down --zero-up`` are what ``vae_training.init=shortcut`` does in the stage.
"""
import argparse
import json
import math
import random
import time

import numpy as np
import torch

from data_pipeline.demo import SceneSpec, render_scene
from ltx.evaluation.demo_vocabulary import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES
from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.training.vae_init import (
    identity_residual_blocks,
    set_initial_logvar,
    shortcut_only_upsamplers,
    strided_identity_downsamplers,
)

MOVING = [d for d in DIRECTIONS if d not in ("still", "drift")]


def clip(rng, frames, size):
    colour = rng.choice(list(COLOURS))
    bg_colour = rng.choice([c for c in COLOURS if c != colour])
    scene = SceneSpec(rng.choice(SHAPES), colour, rng.choice(MOVING + ["still"]), rng.choice(BACKGROUNDS), bg_colour,
                      frames)
    video = np.stack(list(render_scene(scene, size, size)))  # (F, H, W, 3)
    return torch.from_numpy(video).permute(3, 0, 1, 2).float() / 127.5 - 1


def oracle(video, channels):
    first = torch.nn.functional.avg_pool3d(video[:, :, :1], (1, 32, 32))
    rest = torch.nn.functional.avg_pool3d(video[:, :, 1:], (8, 32, 32))
    z = torch.cat([first, rest], dim=2)  # (B, 3, F', H', W')
    return torch.cat([z, torch.zeros(z.shape[0], channels - 3, *z.shape[2:])], dim=1)


def psnr(a, b):
    mse = ((a.clamp(-1, 1) - b) / 2).pow(2).mean(dim=(1, 2, 3, 4))
    return (-10 * torch.log10(mse)).mean().item()


def apply_init(vae: VideoAutoencoder, a: argparse.Namespace) -> None:
    """The pieces of ``vae_training.init=shortcut`` one flag each, so they can be measured apart (the bare-loop
    runs predate adaLN-zero, which the stage runs measured: README)."""
    if a.logvar_bias is not None:
        set_initial_logvar(vae, a.logvar_bias)
    if a.zero_res:
        identity_residual_blocks(vae)
    if a.id_down:
        strided_identity_downsamplers(vae)
    if a.zero_up:
        shortcut_only_upsamplers(vae)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--train-clips", type=int, default=0, help="0 = fresh clips every step")
    p.add_argument("--enc", default="16,32,64,64")
    p.add_argument("--dec", default="32,64,128")
    p.add_argument("--latent", type=int, default=128)
    p.add_argument("--sample", action="store_true", help="sample the posterior (else the mean)")
    p.add_argument("--logvar-bias", type=float, default=None)
    p.add_argument("--kl", type=float, default=0.0)
    p.add_argument("--denoise", type=float, default=0.0)
    p.add_argument("--no-noise", action="store_true")
    p.add_argument("--no-tc", action="store_true")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--cosine", action="store_true")
    p.add_argument("--betas", default="0.9,0.99")
    p.add_argument("--wd", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--tag", default="run", help="names the PNG and the summary line")
    p.add_argument("--out", default="outputs/vae_recipe", help="where the reconstruction grid PNG goes")
    p.add_argument("--zero-res", action="store_true")
    p.add_argument("--id-down", action="store_true")
    p.add_argument("--zero-up", action="store_true")
    p.add_argument("--fixed-batch", action="store_true")
    p.add_argument("--trace", action="store_true")
    p.add_argument("--oracle", action="store_true", help="decoder only, on block-mean colour latents")
    a = p.parse_args()
    torch.manual_seed(0)
    rng = random.Random(0)
    cfg = vae_config("tiny", latent_channels=a.latent, block_out_channels=tuple(int(x) for x in a.enc.split(",")),
                     decoder_block_out_channels=tuple(int(x) for x in a.dec.split(",")),
                     noise_injection=not a.no_noise, timestep_conditioning=not a.no_tc)
    vae = VideoAutoencoder(cfg)
    apply_init(vae, a)
    params = sum(p.numel() for p in vae.parameters())
    opt = torch.optim.AdamW(vae.parameters(), lr=a.lr, betas=tuple(float(b) for b in a.betas.split(",")),
                            weight_decay=a.wd)

    def lr_at(step):
        if step < a.warmup:
            return (step + 1) / a.warmup
        if a.cosine:
            return 0.5 * (1 + math.cos(math.pi * (step - a.warmup) / max(1, a.steps - a.warmup)))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    erng = random.Random(12345)
    held = torch.stack([clip(erng, a.frames, a.size) for _ in range(16)])
    pool = [clip(rng, a.frames, a.size) for _ in range(a.train_clips)] if a.train_clips else None
    curve = []
    start = time.time()
    tc = not a.no_tc
    for step in range(a.steps + 1):
        if step % a.eval_every == 0 or step == a.steps:
            vae.eval()
            with torch.no_grad():
                post = vae.encode(held)
                rec = vae.decode(oracle(held, a.latent) if a.oracle else post.mean, 0.0 if tc else None)
                mean_colour = held.mean(dim=(2, 3, 4), keepdim=True).expand_as(held)
                row = {"step": step, "psnr": round(psnr(rec, held), 2), "baseline_mean": round(psnr(mean_colour, held), 2),
                       "latent_std": round(post.mean.std().item(), 3), "post_std": round(post.std.mean().item(), 3),
                       "sec": round(time.time() - start, 1), "train_psnr4": round(psnr(rec[:4], held[:4]), 2) if a.fixed_batch else None}
            curve.append(row)
            print(json.dumps(row), flush=True)
            vae.train()
        if step == a.steps:
            break
        if a.fixed_batch:
            video = held[:a.batch]
        else:
            video = torch.stack(rng.sample(pool, a.batch) if pool else [clip(rng, a.frames, a.size) for _ in range(a.batch)])
        post = vae.encode(video)
        z = post.sample() if a.sample else post.mean
        if a.oracle:
            z = oracle(video, a.latent)
        t = torch.zeros(a.batch)
        if a.denoise and tc:
            t = torch.where(torch.rand(a.batch) < a.denoise, torch.rand(a.batch) * 0.2, torch.zeros(a.batch))
            z = (1 - t.view(-1, 1, 1, 1, 1)) * z + t.view(-1, 1, 1, 1, 1) * torch.randn_like(z)
        rec = vae.decode(z, t if tc else None)
        loss = (rec - video).pow(2).mean()
        if a.kl:
            kl = 0.5 * (post.mean.pow(2) + post.logvar.exp() - 1 - post.logvar).sum(1).mean()
            loss = loss + a.kl * kl
        opt.zero_grad()
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(vae.parameters(), a.clip if a.clip else 1e9)
        if a.trace:
            norms = {n: p.grad.norm().item() for n, p in vae.named_parameters() if p.grad is not None}
            top = sorted(norms.items(), key=lambda kv: -kv[1])[:3]
            print(json.dumps({"s": step, "loss": round(loss.item(), 4), "g": round(gnorm.item(), 3),
                              "zmax": round(post.mean.abs().max().item(), 2), "top": [(n, round(v, 3)) for n, v in top]}), flush=True)
        opt.step()
        sched.step()
    with torch.no_grad():
        vae.eval()
        zs = vae.encode(held).mean
        shuffled = vae.decode(zs.roll(1, dims=0), 0.0 if tc else None)
        zeros = vae.decode(torch.zeros_like(zs), 0.0 if tc else None)
        print(json.dumps({"psnr_shuffled_latents": round(psnr(shuffled, held), 2), "psnr_zero_latents": round(psnr(zeros, held), 2)}))
    from pathlib import Path

    from PIL import Image
    Path(a.out).mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        vae.eval()
        rec = vae.decode(vae.encode(held[:6]).mean, 0.0 if tc else None).clamp(-1, 1)
    rows = [torch.cat([held[i, :, f] for f in (0, 4, 8)] + [rec[i, :, f] for f in (0, 4, 8)], dim=2) for i in range(6)]
    grid = ((torch.cat(rows, dim=1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(f"{a.out}/{a.tag}.png")
    print(json.dumps({"tag": a.tag, "params": params, "args": vars(a), "final": curve[-1]}), flush=True)


if __name__ == "__main__":
    main()
