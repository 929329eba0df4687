"""The prepared GPU check: ``python -m benchmarks.gpu_check --out DIR`` (``make gpu-check``).

One call on a lent GPU (benchmarks/README.md, "The GPU procedure", says how to get there) measures, in
about 8 minutes, what CPU tests cannot: CUDA numerics, bf16 training speed, NCCL FSDP2, the VAE and
sampling at the paper's sizes. Sections, each inside its share of the time (``GPU_PLAN.shares``):

- ``correctness``: our DiT and VAE against diffusers at a small configuration, fp32 and bf16, on the GPU:
  a CUDA-only numerics problem shows up here first.
- ``gemm``: the GPU's measured bf16 (and fp32) matmul peak, the ceiling of the model FLOP/s utilisation.
- ``dit_train``: the 2B DiT preset (random weights) training step, bf16 autocast, fused AdamW, at about
  6,144 and 24,000 latent tokens: tokens/s, model FLOP/s utilisation (FLOPs counted by torch's
  FlopCounterMode) against the gemm peak, peak memory; ours eager and ``LTXVideoTransformer3DModel`` with
  the same weights.
- ``fsdp``: ``train_dit`` with ``trainer=fsdp`` (world size 1, NCCL on a GPU), bf16 parameters, activation
  checkpointing: 10 steps at the 2B preset's width (4 blocks), completes and writes its distributed checkpoint.
- ``vae``: the 0.9.1 VAE (random weights) in bf16: encode + decode of 1x3x121x512x768, time and peak memory,
  ours against ``AutoencoderKLLTXVideo``; and a training step (bf16 autocast) at 1x3x17x256x256.
- ``sampling``: the 2B DiT + 0.9.1 VAE at 121x512x768: 40 Euler steps with CFG, ours against diffusers'
  ``LTXPipeline`` with the same weights and a tiny T5 (the text encoder is not the point).
- ``dit_compiled``: ours with ``parallel.compile=true`` (every block compiled with inductor) at dit_train's
  sizes; last, so that a compilation that takes long costs no other section its time.

A size that would not fit its section's share is shrunk, and the row says so (``benchmarks.gpu_budget``).
A failing section is recorded with its error and the next one runs; one still running at its share plus the
plan's grace is stopped (SIGALRM) and reported as timed out; ``DIR/gpu_check.json`` and
``DIR/gpu_check.md`` are rewritten after every section, so a run stopped early still reports.
``--dry-run`` runs the same code at tiny sizes on CPU (gloo) in about a minute; ``make test`` runs it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.gpu_budget import Budget
from benchmarks.gpu_measure import free_memory
from benchmarks.gpu_plan import DRY_PLAN, GPU_PLAN, SECTIONS, Context, Plan, SectionResult
from benchmarks.gpu_report import machine, markdown, write_report
from benchmarks.gpu_sections_dit import (
    section_correctness,
    section_dit_compiled,
    section_dit_train,
    section_gemm,
)
from benchmarks.gpu_sections_pipeline import section_fsdp, section_sampling, section_vae

__all__ = ["DRY_PLAN", "GPU_PLAN", "SECTIONS", "main", "run_check"]

SECTION_FUNCTIONS: dict[str, Callable[[Context, SectionResult], None]] = {
    "correctness": section_correctness, "gemm": section_gemm, "dit_train": section_dit_train,
    "fsdp": section_fsdp, "vae": section_vae, "sampling": section_sampling, "dit_compiled": section_dit_compiled,
}


class SectionTimeout(Exception):
    """A section ran past its hard limit (its share plus the plan's grace)."""


@contextmanager
def hard_limit(seconds: float) -> Iterator[None]:
    """Raise ``SectionTimeout`` in the main thread once ``seconds`` have passed (SIGALRM; where there is no
    such timer, or off the main thread, nothing is enforced). A child process waited on is killed with it."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame) -> None:
        raise SectionTimeout(f"stopped at its hard limit of {seconds:.3g} s (share + grace)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_check(plan: Plan, out: Path, sections: list[str], total_s: float | None = None) -> list[SectionResult]:
    """Run ``sections`` of ``plan`` in order, each stopped at its hard limit; the report is rewritten after
    each one."""
    budget = Budget(total_s or plan.total_s, plan.shares)
    info = machine(plan)
    results = [SectionResult(name) for name in sections]
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        context = Context(plan, budget, Path(scratch))
        for result in results:
            if budget.total_left() <= 0:
                result.notes.append("not run: the check's time is spent")
                write_report(out, results, info, budget.elapsed())
                continue
            budget.start_section(result.name)
            start = time.perf_counter()
            print(f"[gpu_check] {result.name} ...", flush=True)
            limit = min(plan.shares[result.name], budget.total_left()) + plan.grace_s
            try:
                with hard_limit(limit):
                    SECTION_FUNCTIONS[result.name](context, result)
                result.status = "ok"
            except SectionTimeout as timeout:  # the rows so far stay; the next section runs
                result.status, result.error = "timed out", str(timeout)
            except Exception:  # a failed section is reported and the next one runs
                result.status, result.error = "failed", traceback.format_exc()
            result.seconds = time.perf_counter() - start
            free_memory(plan.torch_device)
            print(f"[gpu_check] {result.name}: {result.status} in {result.seconds:.0f} s", flush=True)
            write_report(out, results, info, budget.elapsed())
    print(markdown(results, info, budget.elapsed()))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where gpu_check.json and gpu_check.md go")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (gloo): checks the code, not the GPU")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--total-seconds", type=float, default=None, help="the whole check's time (default: the plan's)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU, or pass --dry-run for the CPU rehearsal")
    results = run_check(DRY_PLAN if args.dry_run else GPU_PLAN, args.out, args.sections, args.total_seconds)
    return 0 if all(result.status == "ok" for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
