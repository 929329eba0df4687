"""VAE encode and decode (inference), ours against diffusers' AutoencoderKLLTXVideo with the same
configuration and weights: throughput (frames/s) and peak memory; and one training step of each
(encode, posterior sample, timestep-conditioned decode, MSE, backward, AdamW: ours the optimizer of
conf/train_vae.yaml, diffusers, which ships no VAE trainer, torch's default AdamW).

Peak memory: on a GPU, ``torch.cuda.max_memory_allocated`` around one call; on CPU (Linux), the rise of
the resident set's high-water mark (VmHWM, reset through /proc/self/clear_refs after loading) during one
encode + decode, in a fresh process per side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.gemm import device
from benchmarks.harness import Row, comparison, interleave, make_optimizer, optimizer_note, peak_memory_bytes
from ltx.interop.diffusers import export_vae
from ltx.models.vae import VideoAutoencoder, vae_config

CLIP = (1, 3, 33, 256, 256)
QUICK_CLIP = (1, 3, 9, 64, 64)
TRAIN_CLIP = (1, 3, 17, 128, 128)
SPEED_TARGET, MEMORY_TARGET = 1.25, 0.8  # ours >= 1.25x faster; ours <= 0.8x the memory


def export_random_vae(directory: Path) -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(vae_config("tiny"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "per_channel_scale" in name:
                parameter.normal_(0.0, 0.5)  # zero-initialised: make noise injection do work
    export_vae(model, directory)


def load(side: str, directory: Path) -> torch.nn.Module:
    if side == "ours":
        from ltx.interop.diffusers import load_vae

        return load_vae(directory).to(device()).eval()
    from diffusers import AutoencoderKLLTXVideo

    return AutoencoderKLLTXVideo.from_pretrained(directory).to(device()).eval()


def encode_decode(side: str, model: torch.nn.Module, clip: torch.Tensor) -> torch.Tensor:
    timestep = torch.tensor([0.05], device=clip.device)
    with torch.no_grad():
        if side == "ours":
            return model.decode(model.encode(clip).mean, timestep)
        return model.decode(model.encode(clip).latent_dist.mean, temb=timestep).sample


def train_step(side: str, model: torch.nn.Module, clip: torch.Tensor,
               optimizer: torch.optim.Optimizer) -> Callable[[], float]:
    """Reconstruction step; both sides draw the posterior sample and decoder noise from seed 2."""
    timestep = torch.tensor([0.05], device=clip.device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        torch.manual_seed(2)
        if side == "ours":
            reconstruction = model.decode(model.encode(clip).sample(), timestep)
        else:
            reconstruction = model.decode(model.encode(clip).latent_dist.sample(), temb=timestep).sample
        loss = (reconstruction - clip).square().mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def training_row(directory: Path, quick: bool) -> Row:
    clip_shape = QUICK_CLIP if quick else TRAIN_CLIP
    clip = torch.rand(clip_shape, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device())
    models = {side: load(side, directory).train() for side in ("ours", "diffusers")}
    steps = {side: train_step(side, model, clip, make_optimizer(side, model, "train_vae"))
             for side, model in models.items()}
    first_losses = {side: step() for side, step in steps.items()}
    times = interleave(steps, repeats=2 if quick else 3, warmup=0)
    row = comparison("vae", f"training step {tuple(clip_shape)}", times["ours"], times["diffusers"],
                     target=SPEED_TARGET, work=clip_shape[0] * clip_shape[2], unit="frames",
                     first_step_loss=first_losses)
    row.notes = optimizer_note("train_vae")
    return row


def cpu_peak_rise(side: str, directory: Path, clip_shape: tuple[int, ...]) -> int:
    """Bytes by which one encode + decode raises the peak RSS of a fresh process."""
    command = [sys.executable, "-m", "benchmarks.vae", "--peak", side, "--directory", str(directory),
               "--clip", *map(str, clip_shape)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(json.loads(result.stdout.strip().splitlines()[-1])["peak_rise_bytes"])


def run(quick: bool) -> list[Row]:
    clip_shape = QUICK_CLIP if quick else CLIP
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        export_random_vae(directory)
        models = {side: load(side, directory) for side in ("ours", "diffusers")}
        clip = torch.rand(clip_shape, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device())
        torch.manual_seed(1)
        first = encode_decode("ours", models["ours"], clip)
        torch.manual_seed(1)
        difference = (first - encode_decode("diffusers", models["diffusers"], clip)).abs().max().item()
        cases = {side: (lambda side=side: encode_decode(side, models[side], clip)) for side in models}
        times = interleave(cases, repeats=2 if quick else 3, warmup=0)
        row = comparison("vae", f"encode + decode {tuple(clip_shape)}", times["ours"], times["diffusers"],
                         target=SPEED_TARGET, work=clip_shape[0] * clip_shape[2], unit="frames",
                         max_abs_difference=difference)
        if torch.cuda.is_available():
            peaks = {side: peak_memory_bytes(cases[side]) for side in models}
        else:
            rounds = 1 if quick else 3  # a fresh process each, alternating sides; the median
            samples = {side: [] for side in models}
            for _ in range(rounds):
                for side in models:
                    samples[side].append(cpu_peak_rise(side, directory, clip_shape))
            peaks = {side: statistics.median(values) for side, values in samples.items()}
        training = training_row(directory, quick)
    memory = Row("vae", f"peak memory of encode + decode {tuple(clip_shape)}",
                 {"peak_MiB": peaks["ours"] / 2**20}, {"peak_MiB": peaks["diffusers"] / 2**20},
                 ratio=peaks["diffusers"] / max(peaks["ours"], 1),
                 target=1 / MEMORY_TARGET,
                 notes="ratio = reference peak / our peak; target 1.25 = ours at most 0.8x"
                       + ("" if torch.cuda.is_available() else "; CPU: rise of the peak RSS in a fresh process, median of 3"))
    return [row, memory, training]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _peak_main(side: str, directory: Path, clip_shape: list[int]) -> None:
    model = load(side, directory)
    clip = torch.rand(clip_shape).mul(2).sub(1).to(device())
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    before = _status_kib("VmRSS")
    encode_decode(side, model, clip)
    print(json.dumps({"peak_rise_bytes": (_status_kib("VmHWM") - before) * 1024}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--peak", choices=("ours", "diffusers"), required=True)
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--clip", type=int, nargs=5, required=True)
    arguments = parser.parse_args()
    _peak_main(arguments.peak, arguments.directory, arguments.clip)
