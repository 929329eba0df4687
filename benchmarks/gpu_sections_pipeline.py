"""The GPU check's system sections: FSDP2 training through ``train_dit``, the VAE, sampling against LTXPipeline."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.gpu_budget import choose_size
from benchmarks.gpu_measure import (
    autocast,
    build_dit,
    build_vae,
    clip_pixels,
    describe_clip,
    describe_grid,
    diffusers_transformer,
    diffusers_vae,
    free_memory,
    is_out_of_memory,
    measure_steps,
    peak_gib,
    relative_difference,
    reset_peak,
    timed,
)
from benchmarks.gpu_plan import Clip, Context, Plan, SectionResult
from benchmarks.harness import make_optimizer
from benchmarks.sampling import MAX_LENGTH, PROMPT, pipeline_frames

REPO_ROOT = Path(__file__).resolve().parents[1]


def fsdp_overrides(plan: Plan, run_dir: Path, t5: Path, caption_channels: int) -> list[str]:
    """The ``train_dit`` command line of the FSDP section."""
    frames, height, width = plan.fsdp_grid
    overrides = ", ".join(f"{key}: {value}" for key, value in plan.fsdp_overrides.items())
    accelerator = "gpu" if plan.torch_device.type == "cuda" else "cpu"
    return ["trainer=fsdp", f"trainer.accelerator={accelerator}", "trainer.devices=1", "logger=csv",
            f"model/dit={plan.fsdp_model}", f"model.dit.overrides={{{overrides}}}",
            "parallel.activation_checkpointing=true", "parallel.param_dtype=bfloat16", "data=synthetic_latents",
            "data.batch_size=1", f"data.latent_shape=[{frames},{height},{width}]", f"data.text_dim={caption_channels}",
            f"data.batches_per_epoch={plan.fsdp_steps}", "data.val_batches=1", f"trainer.max_steps={plan.fsdp_steps}",
            "trainer.log_every_n_steps=1", f"callbacks.checkpoint.every_n_train_steps={plan.fsdp_steps}",
            "vae_checkpoint=null", f"text_encoder.kwargs.path={t5}", "dit_training.samples=null",
            f"run_dir={run_dir}"]


def section_fsdp(context: Context, result: SectionResult) -> None:
    """``python -m ltx.cli.train --config-name train_dit trainer=fsdp ...`` in a child process: it must finish
    in the section's time, log every step and leave a complete distributed checkpoint at the last step."""
    import csv

    from ltx.models.dit import dit_config
    from ltx.training.checkpoints import checkpoint_step, is_complete_checkpoint

    plan = context.plan
    caption_channels = dit_config(plan.fsdp_model, **plan.fsdp_overrides).caption_channels
    run_dir = context.workdir / "fsdp_run"
    command = [sys.executable, "-m", "ltx.cli.train", "--config-name", "train_dit",
               *fsdp_overrides(plan, run_dir, context.tiny_t5(caption_channels), caption_channels)]
    result.notes.append("command: " + " ".join(command[1:]))
    start = time.perf_counter()
    process = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=max(context.budget.section_left(), 1.0))
    wall = time.perf_counter() - start
    output = process.stdout + process.stderr
    backend = re.search(r"distributed_backend=(\w+)", output)
    if process.returncode != 0:
        raise RuntimeError(f"train_dit (trainer=fsdp) exited with {process.returncode}:\n" + output[-3000:])
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        losses = {int(row["step"]): float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")}
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    complete = is_complete_checkpoint(checkpoint)
    size = sum(path.stat().st_size for path in checkpoint.rglob("*") if path.is_file()) if checkpoint.exists() else 0
    result.add(f"train_dit trainer=fsdp, {plan.fsdp_model} {plan.fsdp_overrides}, {describe_grid(plan.fsdp_grid)}",
               wall_s=wall, backend=backend.group(1) if backend else None, steps_logged=len(losses),
               first_loss=losses.get(min(losses)) if losses else None, last_loss=losses.get(max(losses)) if losses else None,
               checkpoint_complete=complete, checkpoint_step=checkpoint_step(checkpoint) if complete else None,
               checkpoint_GiB=size / 2**30, met=complete and len(losses) == plan.fsdp_steps)


def vae_training_rows(context: Context, result: SectionResult, ours, reference) -> float:
    """A training step of each side (encode, posterior sample, decode at t = 0.05, MSE, backward, AdamW; fp32
    weights, bf16 autocast) at the plan's training clip. Returns our step's seconds."""
    plan, device = context.plan, context.plan.torch_device
    frames, height, width = plan.vae_train_clip
    clip = torch.rand(1, 3, frames, height, width, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device)
    timestep = torch.tensor([0.05], device=device)
    reconstructions = {
        "ours": lambda: ours.decode(ours.encode(clip).sample(), timestep),
        "diffusers": lambda: reference.decode(reference.encode(clip).latent_dist.sample(), temb=timestep).sample}
    seconds = {}
    for side, model in (("ours", ours.train()), ("diffusers", reference.train())):
        optimizer = make_optimizer(side, model, "train_vae")

        def step(optimizer=optimizer, reconstruction=reconstructions[side]) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            torch.manual_seed(2)  # the same posterior sample and decoder noise on both sides
            with autocast(device, "bf16"):
                loss = (reconstruction().float() - clip).square().mean()
            loss.backward()
            optimizer.step()
            return loss.detach()

        values = measure_steps(step, plan.vae_repeats + 1, device)
        seconds[side] = values["step_s"]
        result.add(f"training step {describe_clip(plan.vae_train_clip)}, bf16 autocast, {side}",
                   frames_per_s=frames / values["step_s"], **values)
        del optimizer, step
        model.zero_grad(set_to_none=True)
        free_memory(device)
    return seconds["ours"]


def section_vae(context: Context, result: SectionResult) -> None:
    """The training step of each side, then encode + decode in bf16 weights at the largest clip that the time
    (predicted from the training step) and the memory allow."""
    plan, device = context.plan, context.plan.torch_device
    ours = build_vae(plan.vae_preset, device)
    reference = diffusers_vae(ours, device)
    result.notes.append(f"{plan.vae_preset}: {sum(p.numel() for p in ours.parameters()) / 1e6:.0f}M parameters")
    train_step_s = vae_training_rows(context, result, ours, reference)
    ours, reference = ours.to(torch.bfloat16).eval(), reference.to(torch.bfloat16).eval()
    forward_per_pixel = train_step_s / 3 / clip_pixels(plan.vae_train_clip)  # backward ~ 2x forward

    def predicted(candidate: Clip) -> float:  # both sides, the first call and the timed ones
        return 2 * (plan.vae_repeats + 1) * forward_per_pixel * clip_pixels(candidate)

    chosen, note = choose_size(plan.vae_clips, predicted, context.budget.section_left(), describe_clip)
    if note:
        result.notes.append(f"encode + decode: {note}")
    for candidate in plan.vae_clips[plan.vae_clips.index(chosen):] if chosen is not None else ():
        try:
            difference, relative = relative_difference(*vae_inference(context, result, ours, reference, candidate))
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            result.notes.append(f"encode + decode {describe_clip(candidate)}: out of memory, trying smaller")
            free_memory(device)
            continue
        result.notes.append(f"encode + decode {describe_clip(candidate)} bf16: ours vs diffusers max difference "
                            f"{difference:.3g} ({relative:.2%} of the largest value)")
        break


def vae_inference(context: Context, result: SectionResult, ours, reference, clip_size: Clip):
    """Encode (posterior mean) + decode at t = 0.05 in bf16 of each side: time, peak memory; returns both videos."""
    plan, device = context.plan, context.plan.torch_device
    clip = torch.rand(1, 3, *clip_size, generator=torch.Generator().manual_seed(0)).mul(2).sub(1)
    clip = clip.to(device=device, dtype=torch.bfloat16)
    timestep = torch.tensor([0.05], device=device)
    sides = {"ours": lambda: ours.decode(ours.encode(clip).mean, timestep),
             "diffusers": lambda: reference.decode(reference.encode(clip).latent_dist.mean, temb=timestep).sample}
    videos = {}
    for side, call in sides.items():
        with torch.no_grad():
            baseline = reset_peak(device)
            first_s, videos[side] = timed(call, device)
            memory = peak_gib(device, baseline)
            seconds = [timed(call, device)[0] for _ in range(plan.vae_repeats)]
        median = statistics.median(seconds)
        result.add(f"encode + decode {describe_clip(clip_size)}, bf16, {side}", step_s=median, min_s=min(seconds),
                   max_s=max(seconds), first_step_s=first_s, frames_per_s=clip_size[0] / median, peak_GiB=memory)
        if side == "ours":
            context.measured["vae_encode_decode_s_per_pixel"] = median / clip_pixels(clip_size)
    rows = {row["case"].rsplit(", ", 1)[1]: row for row in result.rows[-2:]}
    rows["ours"]["speed_vs_diffusers"] = rows["diffusers"]["step_s"] / rows["ours"]["step_s"]
    return videos["ours"].float(), videos["diffusers"].float()


def sampling_pair(context: Context) -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor], int]:
    """Ours and ``LTXPipeline`` over the same bf16 weights (the plan's DiT with N(0, 0.02) weights, its VAE) and a
    tiny bf16 T5: two callables ``(clip, steps) -> video`` and the T5's width."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline
    from transformers import AutoTokenizer, T5EncoderModel

    from ltx.interop.diffusers import SCHEDULER_CONFIG
    from ltx.registry import TEXT_ENCODERS
    from ltx.training.samples import SampleSettings, generate

    plan, device = context.plan, context.plan.torch_device
    transformer = build_dit(plan.sample_dit_preset, plan.sample_dit_overrides, device, randomize=True)
    transformer = transformer.to(torch.bfloat16).eval()
    vae = build_vae(plan.vae_preset, device).to(torch.bfloat16).eval()
    t5 = context.tiny_t5(transformer.config.caption_channels)
    text_encoder = TEXT_ENCODERS.build("t5", path=t5, max_length=MAX_LENGTH, attend_to_padding=True,
                                       dtype="bfloat16").to(device)
    pipeline = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(SCHEDULER_CONFIG), vae=diffusers_vae(vae, device),
        text_encoder=T5EncoderModel.from_pretrained(t5 / "text_encoder", torch_dtype=torch.bfloat16).to(device),
        tokenizer=AutoTokenizer.from_pretrained(t5 / "tokenizer"), transformer=diffusers_transformer(transformer, device))
    pipeline.set_progress_bar_config(disable=True)
    defaults = SampleSettings()  # the release's guidance, decode timestep and re-noising (0.9.1)

    def settings(clip: Clip, steps: int) -> SampleSettings:
        return replace(defaults, frames=clip[0], height=clip[1], width=clip[2], num_steps=steps, seed=0)

    def ours(clip: Clip, steps: int) -> torch.Tensor:
        return generate(transformer, vae, text_encoder, [PROMPT], settings(clip, steps))

    def theirs(clip: Clip, steps: int) -> torch.Tensor:
        return pipeline_frames(pipeline, settings(clip, steps))

    return ours, theirs, transformer.config.caption_channels


def section_sampling(context: Context, result: SectionResult) -> None:
    """Text-to-video with CFG, ours against ``LTXPipeline``: a 2-step warm-up, then one timed full run each, at
    the largest clip that the DiT and VAE timings of the earlier sections predict to fit."""
    from ltx.training.samples import SampleSettings

    plan, device = context.plan, context.plan.torch_device
    forward = context.measured.get("dit_forward_s_per_token")
    encode_decode = context.measured.get("vae_encode_decode_s_per_pixel")

    def predicted(clip: Clip) -> float:  # both sides; CFG doubles the batch
        tokens = (1 + (clip[0] - 1) // 8) * (clip[1] // 32) * (clip[2] // 32)
        per_call = plan.sample_steps * 2 * tokens * forward + clip_pixels(clip) * encode_decode
        return 2 * per_call * (1 + 2 / plan.sample_steps)

    if forward is None or encode_decode is None:
        clip, note = plan.sample_clips[0], "no DiT / VAE timings from earlier sections to predict with: full size"
    else:
        clip, note = choose_size(plan.sample_clips, predicted, context.budget.section_left(), describe_clip)
    if note:
        result.notes.append(note)
    if clip is None:
        return
    ours, theirs, text_width = sampling_pair(context)
    seconds = {}
    for side, call in (("ours", ours), ("diffusers", theirs)):
        timed(lambda call=call: call(clip, 2), device)  # warm-up: kernels, allocator
        baseline = reset_peak(device)
        seconds[side], video = timed(lambda call=call: call(clip, plan.sample_steps), device)
        result.add(f"text-to-video {describe_clip(clip)}, {plan.sample_steps} steps, CFG "
                   f"{SampleSettings.guidance_scale}, {side}", wall_s=seconds[side], peak_GiB=peak_gib(device, baseline),
                   video_shape=list(video.shape), finite=bool(torch.isfinite(video).all()),
                   transformer_passes=plan.sample_steps)
    result.rows[-2]["speed_vs_diffusers"] = seconds["diffusers"] / seconds["ours"]
    result.notes.append(f"{plan.sample_dit_preset} + {plan.vae_preset} in bf16 with random weights, tiny T5 "
                        f"(d_model {text_width}); CFG doubles the batch on both sides")
