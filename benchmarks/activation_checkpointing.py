"""Activation checkpointing: memory and time of one training step (forward + backward) with it off and on.

    python benchmarks/activation_checkpointing.py [--dit-tokens 3072] [--repeats 3]

For each model and setting a fresh process runs the step, so the peak resident memory (ru_maxrss) is
that step's own; it also reports the bytes autograd saves for backward (the activations, measured with
saved_tensors_hooks), the loss, and the median step time. CPU by default; on a GPU it reports
torch.cuda.max_memory_allocated instead of the resident set.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from ltx.models.dit import VideoTransformer, dit_config
from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.training.parallelize import apply_activation_checkpointing


def build(model: str, tokens: int, device: torch.device) -> tuple[torch.nn.Module, tuple]:
    torch.manual_seed(0)
    if model == "dit":  # hidden 512, 8 blocks; (3, 32, tokens / 96) latent grid
        network = VideoTransformer(dit_config("tiny", num_attention_heads=8, attention_head_dim=64,
                                              num_layers=8, cross_attention_dim=512))
        frames, height = 3, 32
        inputs = (torch.randn(1, 128, frames, height, tokens // (frames * height)), torch.tensor([0.5]),
                  torch.randn(1, 64, 32))
    else:
        network = VideoAutoencoder(vae_config("tiny", noise_injection=False))
        inputs = (torch.randn(1, 3, 33, 256, 256),)
    for parameter in network.parameters():  # no zero-initialised layers: every block gets gradients
        if parameter.ndim >= 2:
            torch.nn.init.normal_(parameter, std=0.02)
    return network.to(device), tuple(x.to(device) for x in inputs)


def step(model: str, network: torch.nn.Module, inputs: tuple) -> tuple[torch.Tensor, int]:
    saved = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        if model == "dit":
            output = network(*inputs)
        else:
            output = network.decode(network.encode(inputs[0]).mean, torch.tensor([0.05], device=inputs[0].device))
        loss = output.float().pow(2).mean()
    loss.backward()
    return loss.detach(), sum(saved)


def measure(model: str, checkpointing: bool, tokens: int, repeats: int) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network, inputs = build(model, tokens, device)
    if checkpointing:
        apply_activation_checkpointing(network)
    times = []
    for _ in range(repeats):
        network.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, saved = step(model, network, inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"model": model, "activation_checkpointing": checkpointing, "loss": float(loss),
            "saved_for_backward_MiB": saved / 2**20, "peak_MiB": peak / 2**20,
            "step_s_median": statistics.median(times), "device": device.type}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dit-tokens", type=int, default=3072)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1] == "on", args.dit_tokens, args.repeats)))
        return
    rows = []
    for model in ("dit", "vae"):
        for setting in ("off", "on"):
            command = [sys.executable, __file__, "--one", model, setting, "--dit-tokens", str(args.dit_tokens),
                       "--repeats", str(args.repeats)]
            rows.append(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
    print("| model | checkpointing | loss | saved for backward (MiB) | peak (MiB) | step (s) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {'on' if row['activation_checkpointing'] else 'off'} | {row['loss']:.6f} | "
              f"{row['saved_for_backward_MiB']:.1f} | {row['peak_MiB']:.0f} | {row['step_s_median']:.3f} |")


if __name__ == "__main__":
    main()
