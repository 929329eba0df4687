"""The GPU check's model sections: correctness against diffusers, the matmul peak, the 2B DiT training step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from benchmarks.gemm import measure_peak
from benchmarks.gpu_budget import choose_size
from benchmarks.gpu_measure import (
    autocast,
    build_dit,
    build_vae,
    describe_clip,
    describe_grid,
    diffusers_transformer,
    diffusers_vae,
    dit_inputs,
    free_memory,
    grid_tokens,
    is_out_of_memory,
    measure_steps,
    our_velocity,
    reference_velocity,
    relative_difference,
    train_step,
)
from benchmarks.gpu_plan import Context, Grid, SectionResult
from benchmarks.harness import make_optimizer

CORRECTNESS_BOUNDS = {"fp32": 2e-3, "bf16": 5e-2}  # max difference over max |reference|; fp32 allows TF32 convs


def section_correctness(context: Context, result: SectionResult) -> None:
    """Our DiT and VAE against diffusers at a small configuration on the device, fp32 and bf16 autocast."""
    plan, device = context.plan, context.plan.torch_device
    ours = build_dit("tiny", plan.correctness_dit, device, randomize=True).eval()
    reference = diffusers_transformer(ours, device).eval()
    inputs = dit_inputs(ours.config, plan.correctness_grid, device, text_length=32)
    for dtype in ("fp32", "bf16"):
        with torch.no_grad(), autocast(device, dtype):
            difference, relative = relative_difference(our_velocity(ours, inputs), reference_velocity(reference, inputs))
        result.add(f"DiT {describe_grid(plan.correctness_grid)}, {dtype}", max_abs_difference=difference,
                   relative=relative, bound=CORRECTNESS_BOUNDS[dtype], met=relative <= CORRECTNESS_BOUNDS[dtype])
    vae = build_vae("tiny", device).eval()  # per-channel noise scales stay zero: the decoders' noise does nothing
    vae_reference = diffusers_vae(vae, device).eval()
    clip = torch.rand(1, 3, *plan.correctness_clip, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device)
    timestep = torch.tensor([0.05], device=device)
    for dtype in ("fp32", "bf16"):
        with torch.no_grad(), autocast(device, dtype):
            mine = vae.decode(vae.encode(clip).mean, timestep)
            theirs = vae_reference.decode(vae_reference.encode(clip).latent_dist.mean, temb=timestep).sample
        difference, relative = relative_difference(mine, theirs)
        result.add(f"VAE encode + decode {describe_clip(plan.correctness_clip)}, {dtype}", max_abs_difference=difference,
                   relative=relative, bound=CORRECTNESS_BOUNDS[dtype], met=relative <= CORRECTNESS_BOUNDS[dtype])


def section_gemm(context: Context, result: SectionResult) -> None:
    """The bf16 and fp32 matmul peak (``benchmarks.gemm.measure_peak``: median of ``gemm_repeats`` size^3 products)."""
    size = context.plan.gemm_size
    for name, gflop_per_s in measure_peak(size, context.plan.gemm_repeats).items():
        context.measured[f"gemm_{name}_flop_per_s"] = gflop_per_s * 1e9
        result.add(f"{name} matmul {size}x{size}x{size}", tflop_per_s=gflop_per_s / 1e3)


class DiTCases:
    """Training-step cases of the DiT sections: our model, its rows, and what they share through the context
    (FLOPs and step times per grid)."""

    def __init__(self, context: Context, result: SectionResult) -> None:
        self.context, self.result = context, result
        self.plan, self.device = context.plan, context.plan.torch_device
        self.ours = build_dit(self.plan.dit_preset, self.plan.dit_overrides, self.device).train()
        self.peak = context.measured.get("gemm_bf16_flop_per_s")
        parameters = sum(p.numel() for p in self.ours.parameters())
        result.notes.append(f"{self.plan.dit_preset} {self.plan.dit_overrides or ''}: {parameters / 1e9:.2f}B "
                            f"parameters, fp32 master weights, bf16 autocast, batch 1, 128 text tokens; optimizers as "
                            f"in benchmarks/dit.py")

    def run(self, variant: str, model, velocity: Callable, grid: Grid, warmup: int = 1) -> dict[str, Any] | None:
        """One row: ``warmup`` + ``dit_steps`` training steps of ``model`` at ``grid``; None on out-of-memory
        (recorded as a row with the error)."""
        case = f"{describe_grid(grid)}, {variant}"
        flops_by_grid = self.context.dit_flops
        optimizer = make_optimizer("diffusers" if variant == "diffusers" else "ours", model, "train_dit")
        step = train_step(model, velocity, dit_inputs(self.ours.config, grid, self.device), optimizer, self.device)
        try:
            values = measure_steps(step, self.plan.dit_steps, self.device, warmup=warmup,
                                   count_flops=grid not in flops_by_grid)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            self.result.add(case, error=f"out of memory: {str(error).splitlines()[0]}")
            return None
        finally:
            del optimizer, step
            model.zero_grad(set_to_none=True)
            free_memory(self.device)
        flops = flops_by_grid.setdefault(grid, values.pop("flops_per_step", 0))
        self.context.dit_step_s[(variant, grid)] = values["step_s"]
        row = self.result.add(case, tokens_per_s=grid_tokens(grid) / values["step_s"],
                              tflop_per_s=flops / values["step_s"] / 1e12,
                              mfu=flops / values["step_s"] / self.peak if self.peak else None, **values)
        if variant == "ours compiled":
            row["compile_s"] = values["first_step_s"] - values["step_s"]
        return row

    def choose_grids(self, calibration: dict[str, Any]) -> list[Grid]:
        """The first grid, then for each larger wanted size the largest candidate at which ours and diffusers
        fit what the section has left after diffusers' run at the first grid."""
        plan, first = self.plan, self.plan.dit_grids[0][0]
        calls = plan.dit_steps + 2

        def predicted(grid: Grid) -> float:  # attention makes a step grow faster than the token count
            return 2 * calls * calibration["step_s"] * (grid_tokens(grid) / grid_tokens(first)) ** 1.5

        left = self.context.budget.section_left() - calls * calibration["step_s"]
        grids = [first]
        for candidates in plan.dit_grids[1:]:
            grid, note = choose_size(candidates, predicted, left, describe_grid)
            if note:
                self.result.notes.append(f"large size: {note}")
            if grid is not None:
                grids.append(grid)
        return grids

    def run_ours_shrinking_on_oom(self, grid: Grid) -> Grid | None:
        """Ours eager at ``grid``, else at the next smaller candidate of its size while memory runs out."""
        candidates = next(c for c in self.plan.dit_grids if grid in c)
        for candidate in candidates[candidates.index(grid):]:
            if self.run("ours", self.ours, our_velocity, candidate) is not None:
                return candidate
        return None

    def add_speed_ratios(self) -> None:
        """``speed_vs_diffusers`` (diffusers' step time at the row's grid / the row's) where diffusers ran."""
        for row in self.result.rows:
            grid = next((g for g in self.context.dit_grids if row["case"].startswith(f"{describe_grid(g)},")), None)
            theirs = self.context.dit_step_s.get(("diffusers", grid))
            if "step_s" in row and theirs is not None:
                row["speed_vs_diffusers"] = theirs / row["step_s"]


def section_dit_train(context: Context, result: SectionResult) -> None:
    """The DiT training step at the plan's token counts, ours and diffusers' eager. The first (small) grid
    calibrates the prediction that sizes the large one."""
    cases = DiTCases(context, result)
    first = context.plan.dit_grids[0][0]
    calibration = cases.run("ours", cases.ours, our_velocity, first)
    if calibration is None:
        return
    context.measured["dit_forward_s_per_token"] = calibration["step_s"] / 3 / grid_tokens(first)
    large = [cases.run_ours_shrinking_on_oom(grid) for grid in cases.choose_grids(calibration)[1:]]
    context.dit_grids[:] = [first] + [grid for grid in large if grid is not None]
    reference = diffusers_transformer(cases.ours, context.plan.torch_device).train()
    for grid in context.dit_grids:
        if context.budget.section_left() <= 0:
            result.notes.append(f"diffusers at {describe_grid(grid)}: out of time")
            continue
        cases.run("diffusers", reference, reference_velocity, grid)
    cases.add_speed_ratios()


def section_dit_compiled(context: Context, result: SectionResult) -> None:
    """Ours with ``parallel.compile=true`` (every block compiled in place) at the grids dit_train ran, the large
    one only if its predicted cost (a compilation plus the eager steps) fits. Last in the check: a compilation
    that takes unexpectedly long then costs no other section its time."""
    from ltx.training.parallelize import apply_compile

    if not context.dit_grids:
        raise RuntimeError("dit_compiled repeats dit_train's sizes, and dit_train measured none: run dit_train first")
    cases = DiTCases(context, result)
    apply_compile(cases.ours, backend=context.plan.compile_backend)
    calls = context.plan.dit_steps + 3
    for grid in context.dit_grids:
        eager = context.dit_step_s.get(("ours", grid), 0.0)
        predicted = context.plan.compile_allowance_s + calls * eager
        if grid != context.dit_grids[0] and predicted > context.budget.section_left():
            result.notes.append(f"{describe_grid(grid)}: skipped, predicted {predicted:.0f} s (a compilation and "
                                f"{calls} steps), {context.budget.section_left():.0f} s left")
            continue
        cases.run("ours compiled", cases.ours, our_velocity, grid, warmup=2)
    cases.add_speed_ratios()
