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

import data_pipeline.demo as demo_world_renderer
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
# The world before session 7 (runs/ older than s7_*): shapes of half-size 0.14, paths from 0.15 of the frame.
LEGACY_SHAPE_HALF_SIZE = 0.14
LEGACY_PATHS = {"left_to_right": ((0.15, 0.5), (0.85, 0.5)), "right_to_left": ((0.85, 0.5), (0.15, 0.5)),
                "top_to_bottom": ((0.5, 0.15), (0.5, 0.85)), "bottom_to_top": ((0.5, 0.85), (0.5, 0.15)),
                "diagonal": ((0.15, 0.2), (0.85, 0.8))}


def use_legacy_world() -> None:
    """Render clips as the world did before session 7 (for the older runs' commands)."""
    demo_world_renderer.SHAPE_HALF_SIZE = LEGACY_SHAPE_HALF_SIZE
    demo_world_renderer.DIRECTIONS = {name: (*LEGACY_PATHS.get(name, value[:2]), value[2])
                                      for name, value in DIRECTIONS.items()}


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
    if a.avg_down:
        average_pooling_downsamplers(vae)


@torch.no_grad()
def average_pooling_downsamplers(vae: VideoAutoencoder) -> None:
    """Every encoder stride-2 ``C -> C`` downsampler as a 2x2x2 average pool of each channel (the DC-AE
    shortcut's effect when the width does not change) instead of the strided identity."""
    for block in vae.encoder.down_blocks:
        if block.downsamplers is None:
            continue
        conv = block.downsamplers[0].conv
        out_channels, in_channels = conv.weight.shape[:2]
        if out_channels != in_channels:
            continue
        conv.weight.zero_()
        if conv.bias is not None:
            conv.bias.zero_()
        index = torch.arange(out_channels)
        for frame in (1, 2):  # kernel taps of the 2x2x2 block an output owns (causal time padding 2, space 1)
            for row in (1, 2):
                for column in (1, 2):
                    conv.weight[index, index, frame, row, column] = 1 / 8


def parameter_groups(vae: VideoAutoencoder, lr: float, fan_exponent: float, reference_fan_in: float = 3456):
    """AdamW groups with lr * (reference / fan_in) ** fan_exponent per layer (muP-like; 0 = one lr for all).
    Biases and other 1-D parameters go with their layer's weight; the reference is the widest conv's fan-in."""
    named = dict(vae.named_parameters())
    groups: dict[float, list] = {}
    for name, parameter in named.items():
        weight = named.get(name.rsplit(".", 1)[0] + ".weight")
        fan_in = weight[0].numel() if weight is not None and weight.ndim > 1 else reference_fan_in
        groups.setdefault((reference_fan_in / fan_in) ** fan_exponent, []).append(parameter)
    return [{"params": parameters, "lr": lr * scale} for scale, parameters in groups.items()]


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
    p.add_argument("--avg-down", action="store_true", help="average-pooling downsamplers (instead of --id-down)")
    p.add_argument("--loss", choices=("mse", "l1"), default="mse")
    p.add_argument("--lr-fan-exponent", type=float, default=0.0, help="per-layer lr * (3456 / fan_in) ** this")
    p.add_argument("--upsample-factor", default="2,2,2", help="the decoder's upsample_factor (1,2,2: a wider last stage)")
    p.add_argument("--shape-half-size", type=float, default=None, help="the world's shape size (default: the vocabulary's)")
    p.add_argument("--legacy-world", action="store_true", help="the world before session 7 (shape half-size 0.14)")
    p.add_argument("--images", type=int, default=0, help="also train on this many single frames per step (a random "
                   "frame of a fresh 17-frame clip each): images are ~9x cheaper than 9-frame clips")
    p.add_argument("--image-pool", type=int, default=0, help="--images from a FIFO of this many frames of past steps")
    p.add_argument("--images-from-batch", action="store_true", help="--images are random frames of the step's clips")
    p.add_argument("--save", default=None, help="write the trained VAE's state dict (safetensors) here")
    a = p.parse_args()
    if a.legacy_world:
        use_legacy_world()
    if a.shape_half_size is not None:
        demo_world_renderer.SHAPE_HALF_SIZE = a.shape_half_size
    torch.manual_seed(0)
    rng = random.Random(0)
    cfg = vae_config("tiny", latent_channels=a.latent, block_out_channels=tuple(int(x) for x in a.enc.split(",")),
                     decoder_block_out_channels=tuple(int(x) for x in a.dec.split(",")),
                     noise_injection=not a.no_noise, timestep_conditioning=not a.no_tc,
                     upsample_factor=tuple(int(x) for x in a.upsample_factor.split(",")))
    vae = VideoAutoencoder(cfg)
    apply_init(vae, a)
    params = sum(p.numel() for p in vae.parameters())
    opt = torch.optim.AdamW(parameter_groups(vae, a.lr, a.lr_fan_exponent), lr=a.lr, betas=tuple(float(b) for b in a.betas.split(",")),
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
    past = None  # --image-pool: frames of past steps
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
        loss = (rec - video).pow(2).mean() if a.loss == "mse" else (rec - video).abs().mean()
        if a.images:
            if a.images_from_batch or a.image_pool:  # random frames of this step's clips
                picks = [(rng.randrange(a.batch), rng.randrange(a.frames)) for _ in range(a.images)]
                frames = torch.stack([video[clip_index, :, frame] for clip_index, frame in picks])  # (N, 3, H, W)
                if a.image_pool:  # ... into a FIFO pool of past steps' frames, and the images drawn from the pool
                    past = frames if past is None else torch.cat([past, frames])[-a.image_pool:]  # (<= pool, 3, H, W)
                    frames = past[torch.tensor([rng.randrange(len(past)) for _ in range(a.images)])]
            else:  # a random frame of a fresh 17-frame clip each
                frames = torch.stack([clip(rng, 17, a.size)[:, rng.randrange(17)] for _ in range(a.images)])
            images = frames.unsqueeze(2)  # (N, 3, 1, H, W): one-frame videos, encoded alone by the causal encoder
            decoded = vae.decode(vae.encode(images).mean, torch.zeros(a.images) if tc else None)
            image_error = decoded - images
            loss = loss + (image_error.pow(2).mean() if a.loss == "mse" else image_error.abs().mean())
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

    if a.save:
        from safetensors.torch import save_file
        save_file(vae.state_dict(), a.save)

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
