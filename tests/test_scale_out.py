"""Scale-out: FSDP2 over two CPU processes (gloo) against one process with the same global batch,
sharded checkpoints and their conversion, kill -9 then ``resume=auto``, activation checkpointing.

Tolerances: both sides run in fp32 with fp32 gradient reductions, every random draw is a function of
(seed, step, global sample index) and the loss is a mean of per-sample means, so the runs compute the
same numbers; only the order of floating-point sums differs (two local means averaged vs one mean,
reduce-scatter vs a local sum). That moves values by a few ulps per step (measured: <= 3e-7 relative
over 4 steps); 1e-5 leaves room for that and still fails on any real difference (a wrong gradient
average or an unsynchronised draw changes the losses by 1e-3 or more).
"""

from __future__ import annotations

import copy
import math
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT
from safetensors.torch import load_file
from training_runs import (
    TESTS_ON_PATH,
    dit_overrides,
    metric_by_step,
    metric_files,
    read_rows,
    run_training_process,
    subprocess_env,
    train_command,
    vae_overrides,
)

from benchmarks.activation_checkpointing import step as saved_bytes_step
from ltx.cli.convert_checkpoint import convert
from ltx.interop.diffusers import export_transformer
from ltx.models.dit import VideoTransformer, dit_config
from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.training.checkpoints import is_complete_checkpoint, latest_checkpoint, resolve_resume
from ltx.training.parallelize import (
    ParallelSettings,
    apply_activation_checkpointing,
    block_slots,
    parallelize,
)

TWO_RANKS = ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2"]
RELATIVE_TOLERANCE = 1e-5

pytestmark = pytest.mark.slow


def assert_same_curve(reference: dict[int, float], other: dict[int, float]) -> None:
    assert reference and sorted(reference) == sorted(other)
    for step, value in reference.items():
        assert other[step] == pytest.approx(value, rel=RELATIVE_TOLERANCE), f"step {step}"


def shard_chunks(checkpoint: Path, key: str) -> int:
    from torch.distributed.checkpoint import FileSystemReader

    return len(FileSystemReader(str(checkpoint)).read_metadata().state_dict_metadata[key].chunks)


def test_fsdp_dit_on_two_ranks_matches_one_process_and_converts(demo_dir, tmp_path):
    common = ["trainer.max_steps=4", "data.batches_per_epoch=2", "callbacks.checkpoint.every_n_train_steps=2"]
    single, sharded = tmp_path / "single", tmp_path / "fsdp"
    replicated = tmp_path / "ddp"
    run_training_process("train_dit", *dit_overrides(demo_dir, single, *common, "data.batch_size=4"))
    result = run_training_process("train_dit", *dit_overrides(demo_dir, sharded, *common, "data.batch_size=2",
                                                              *TWO_RANKS))
    run_training_process("train_dit", *dit_overrides(demo_dir, replicated, *common, "data.batch_size=2", "trainer=ddp",
                                                     "trainer.accelerator=cpu", "trainer.devices=2"))
    for key in ("train/loss", "val/loss"):
        for other in (sharded, replicated):
            assert_same_curve(metric_by_step(single / "csv" / "metrics.csv", key),
                              metric_by_step(other / "csv" / "metrics.csv", key))
    counts = re.search(r"parallelized transformer .*: (\d+) of (\d+) parameters are DTensors", result.stdout + result.stderr)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 0  # every trained parameter is sharded

    # the checkpoint is distributed: one file per rank, every block weight (and its EMA) split in two
    checkpoint = sharded / "checkpoints" / "last.ckpt"
    assert checkpoint.is_dir() and is_complete_checkpoint(checkpoint)
    assert sorted(p.name for p in checkpoint.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    for prefix in ("state_dict.transformer.", "state_dict.ema.module."):
        assert shard_chunks(checkpoint, f"{prefix}transformer_blocks.0.attn1.to_q.weight") == 2
    assert shard_chunks(checkpoint, "optimizer_0.state.transformer.transformer_blocks.0.attn1.to_q.weight.exp_avg") == 2

    # converted, the sharded run's EMA weights equal the single process's
    output = convert(checkpoint, tmp_path / "converted")
    converted = load_file(str(output / "model.safetensors"))
    reference = torch.load(single / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for name, value in converted.items():
        torch.testing.assert_close(value, reference[f"ema.module.{name}"], rtol=1e-5, atol=1e-6)
    from diffusers import LTXVideoTransformer3DModel

    diffusers_model = LTXVideoTransformer3DModel.from_pretrained(output / "diffusers")
    torch.testing.assert_close(diffusers_model.proj_out.weight, converted["proj_out.weight"])
    exported = load_file(str(sharded / "export" / "transformer" / "diffusion_pytorch_model.safetensors"))
    torch.testing.assert_close(exported["proj_out.weight"], converted["proj_out.weight"])  # gathered EMA export


def test_fsdp_lora_on_two_ranks_matches_one_process(demo_dir, tmp_path):
    """LoRA on a frozen base under FSDP2 (two ranks, activation checkpointing on) against one process: the
    same loss curve within 1e-5 relative (float32; only the reduction order differs, as in the full-weight
    test above), sharded adapters and EMA, and the same exported adapters."""
    torch.manual_seed(0)
    base = VideoTransformer(dit_config("tiny"))
    with torch.no_grad():
        base.proj_out.weight.normal_(0, 0.05)
    base_dir = export_transformer(base, tmp_path / "base")
    common = ["trainer.max_steps=4", "data.batches_per_epoch=2", "callbacks.checkpoint.every_n_train_steps=2",
              "finetune=lora", "finetune.rank=4", "finetune.alpha=8.0", f"model.dit.pretrained={base_dir}",
              "optimizer.lr=1e-2"]
    single, sharded = tmp_path / "single", tmp_path / "fsdp"
    run_training_process("train_dit", *dit_overrides(demo_dir, single, *common, "data.batch_size=4"))
    result = run_training_process("train_dit", *dit_overrides(demo_dir, sharded, *common, "data.batch_size=2",
                                                              "parallel.activation_checkpointing=true", *TWO_RANKS))
    for key in ("train/loss", "val/loss"):
        assert_same_curve(metric_by_step(single / "csv" / "metrics.csv", key),
                          metric_by_step(sharded / "csv" / "metrics.csv", key))
    assert re.search(r"parallelized transformer .*: (\d+) of \1 parameters are DTensors", result.stdout + result.stderr)
    checkpoint = sharded / "checkpoints" / "last.ckpt"
    assert shard_chunks(checkpoint, "state_dict.transformer.transformer_blocks.0.attn1.to_q.lora_B.default.weight") == 2
    assert shard_chunks(checkpoint, "state_dict.ema.averages.transformer_blocks__0__attn1__to_q__lora_B__default__weight") == 2
    from torch.distributed.checkpoint import FileSystemReader

    keys = FileSystemReader(str(checkpoint)).read_metadata().state_dict_metadata
    assert not any(k.startswith("state_dict.transformer.") and ".lora_" not in k for k in keys)  # no frozen base
    name = "pytorch_lora_weights.safetensors"
    single_lora, sharded_lora = (load_file(str(run / "export" / "transformer" / name)) for run in (single, sharded))
    assert single_lora.keys() == sharded_lora.keys()
    # Adam normalises each update: an adapter element whose gradient is near zero moves by up to lr x (its
    # rounding noise's sign), so elements can differ by more than the loss does (measured: 1.5e-6 at most)
    for key, value in single_lora.items():
        torch.testing.assert_close(sharded_lora[key], value, rtol=1e-4, atol=1e-5)


def test_fsdp_vae_with_rgan_on_two_ranks_matches_one_process(tmp_path):
    common = ["trainer.max_steps=4", "data.batches_per_epoch=2", "callbacks.checkpoint.every_n_train_steps=4"]
    single, sharded = tmp_path / "single", tmp_path / "fsdp"
    run_training_process("train_vae", *vae_overrides(single, *common, "data.batch_size=2"))
    run_training_process("train_vae", *vae_overrides(sharded, *common, "data.batch_size=1", *TWO_RANKS))
    for key in ("train/loss", "train/gan_discriminator", "train/kl", "val/psnr"):
        assert_same_curve(metric_by_step(single / "csv" / "metrics.csv", key),
                          metric_by_step(sharded / "csv" / "metrics.csv", key))
    checkpoint = sharded / "checkpoints" / "last.ckpt"
    assert shard_chunks(checkpoint, "state_dict.vae.decoder.up_blocks.0.resnets.0.conv1.conv.weight") == 2
    # the 0-d timestep_scale_multiplier is stored 1-d by the sharded run and comes back 0-d
    converted = load_file(str(convert(checkpoint, tmp_path / "converted", weights="trained") / "model.safetensors"))
    assert converted["decoder.timestep_scale_multiplier"].shape == ()


def test_adaptive_gan_weight_is_refused_under_fsdp_with_a_clear_error(tmp_path):
    result = subprocess.run(train_command("train_vae", *vae_overrides(tmp_path, "loss.gan.adaptive_weight=true",
                                                                     "trainer.max_steps=1", *TWO_RANKS)),
                            cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "set loss.gan.adaptive_weight=false with trainer=fsdp" in result.stdout + result.stderr


def test_ddp_vae_with_gan_averages_both_networks_and_keeps_replicas_identical(tmp_path):
    """trainer=ddp, the rGAN from step 2 of 4: generator-only steps, then generator and discriminator steps,
    each backward all-reducing its own network (ltx.training.data_parallel; one DDP over both networks
    stopped with "parameters that were not used in producing the loss"). The ranks see different
    samples, so identical trained replicas mean both networks' gradients were reduced. Plain SGD without
    clipping makes each update lr x the gradient (Adam's is nearly scale-free and would hide a sum), so
    updates equal to one process's on the same global batch mean the gradients were averaged."""
    common = ["trainer.max_steps=4", "data.batches_per_epoch=2", "callbacks.checkpoint=null", "callbacks.ema=null",
              "callbacks.preemption=null", "vae_training.num_preview_samples=0", "vae_training.gradient_clip=null",
              "optimizer._target_=torch.optim.SGD", "~optimizer.betas", "optimizer.fused=null", "optimizer.lr=1e-3",
              "loss.gan.betas=null", "+callbacks.rank_weights._target_=training_runs.SaveRankWeights"]
    single, replicated = tmp_path / "single", tmp_path / "ddp"
    for run_dir, extra in ((single, ["data.batch_size=2"]),
                           (replicated, ["data.batch_size=1", "trainer=ddp", "trainer.accelerator=cpu",
                                         "trainer.devices=2", "trainer.precision=32-true"])):
        run_training_process("train_vae", *vae_overrides(run_dir, *common, *extra,
                                                         f"+callbacks.rank_weights.directory={run_dir}"),
                             extra_env=TESTS_ON_PATH)
    for key in ("train/loss", "train/kl", "train/gan_discriminator"):
        assert_same_curve(metric_by_step(single / "csv" / "metrics.csv", key),
                          metric_by_step(replicated / "csv" / "metrics.csv", key))
    assert sorted(metric_by_step(replicated / "csv" / "metrics.csv", "train/gan_discriminator")) == [2, 3]

    def weights(directory: Path, name: str) -> dict[str, torch.Tensor]:
        state = torch.load(directory / f"{name}.pt", map_location="cpu", weights_only=True)
        return {key: value for key, value in state.items() if key.startswith(("vae.", "discriminator."))}

    start, rank0, rank1 = (weights(replicated, name) for name in ("rank0-start", "rank0-end", "rank1-end"))
    single_start, single_end = weights(single, "rank0-start"), weights(single, "rank0-end")
    for network in ("vae.", "discriminator."):
        keys = [key for key in rank0 if key.startswith(network)]
        assert keys and all(torch.equal(start[key], single_start[key]) for key in keys)  # the same initialisation
        for key in keys:
            assert torch.equal(rank0[key], rank1[key]), f"the replicas differ at {key}"
        updates = torch.cat([(rank0[key] - start[key]).flatten() for key in keys])
        single_updates = torch.cat([(single_end[key] - single_start[key]).flatten() for key in keys])
        assert single_updates.abs().max() > 0, f"{network} did not train"
        # a sum instead of a mean would double every update; float sums in another order move them by ulps
        torch.testing.assert_close(updates, single_updates, rtol=1e-3, atol=1e-3 * single_updates.abs().max().item(),
                                   msg=f"{network} updates")


def test_kill_9_then_resume_auto_continues_the_same_loss_curve(demo_dir, tmp_path):
    """Demo shards, online encoding, 3 batches per epoch and a checkpoint every 2 steps: the checkpoint at
    step 4 falls mid-epoch, so the resumed loader must skip the batches already trained on. A cosine lr
    schedule: the resumed run continues its curve from the checkpointed scheduler state."""
    common = ["logger=csv", "trainer.log_every_n_steps=1", "data.num_workers=0", f"data.train_shards={demo_dir / 'shards'}",
              f"data.val_shards={demo_dir / 'val'}", "vae_checkpoint=null",
              f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}", "dit_training.samples=null",
              "trainer.max_steps=9", "data.batches_per_epoch=3", "callbacks.checkpoint.every_n_train_steps=2",
              "scheduler=cosine", "scheduler.warmup_steps=2", "scheduler.min_lr_ratio=0.1"]
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    run_training_process("train_dit", *common, f"run_dir={uninterrupted}")
    command = train_command("train_dit", *common, f"run_dir={interrupted}", "resume=auto")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    target = interrupted / "checkpoints" / "epoch=1-step=4.ckpt"
    deadline = time.monotonic() + 300
    while not is_complete_checkpoint(target) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed_from = latest_checkpoint(interrupted)
    assert resumed_from is not None and resolve_resume("auto", interrupted) == str(resumed_from)
    run_training_process("train_dit", *command[5:])  # the same command, resume=auto

    files = metric_files(interrupted)
    assert len(files) == 2 and files[1].parent.name.startswith("resumed-step")
    resumed_step = int(files[1].parent.name.removeprefix("resumed-step"))
    assert resumed_step >= 4
    reference = metric_by_step(uninterrupted / "csv" / "metrics.csv", "train/loss")
    after = metric_by_step(files[1], "train/loss")
    assert sorted(after) == list(range(resumed_step, 9))  # continues at the checkpoint's step, to the end
    for step, value in after.items():
        assert value == pytest.approx(reference[step], rel=1e-6), f"step {step}"
    reference_lr = metric_by_step(uninterrupted / "csv" / "metrics.csv", "lr")
    resumed_lr = metric_by_step(files[1], "lr")
    # warm-up 1/2, 1; then the cosine from 1e-4 at step 2 towards 1e-5 at step 9
    assert [reference_lr[s] for s in (0, 1, 2)] == pytest.approx([0.5e-4, 1e-4, 1e-4])
    assert reference_lr[8] == pytest.approx(1e-5 + 0.9e-4 * 0.5 * (1 + math.cos(math.pi * 6 / 7)))
    assert sorted(resumed_lr) == list(range(resumed_step, 9))
    assert all(value == pytest.approx(reference_lr[step], rel=1e-9) for step, value in resumed_lr.items())
    validation = metric_by_step(uninterrupted / "csv" / "metrics.csv", "val/loss")
    resumed_validation = metric_by_step(files[1], "val/loss")
    assert resumed_validation and all(v == pytest.approx(validation[s], rel=1e-6) for s, v in resumed_validation.items())
    # every row the module logs has its epoch (LearningRateMonitor's lr rows carry none)
    assert all(row.get("epoch") for row in read_rows(files[1]) if not row.get("lr"))


@pytest.mark.parametrize("model", ["dit", "vae"])
def test_activation_checkpointing_keeps_loss_and_gradients_and_saves_less(model):
    torch.manual_seed(0)
    if model == "dit":
        plain = VideoTransformer(dit_config("tiny"))
        inputs = (torch.randn(2, 128, 3, 4, 4), torch.tensor([0.3, 0.7]), torch.randn(2, 8, 32))
    else:
        plain = VideoAutoencoder(vae_config("tiny", noise_injection=False))
        inputs = (torch.randn(1, 3, 9, 64, 64),)
    checkpointed = copy.deepcopy(plain)
    assert apply_activation_checkpointing(checkpointed) == len(block_slots(plain)) > 0
    assert list(checkpointed.state_dict()) == list(plain.state_dict())  # names unchanged (diffusers layout)

    plain_loss, plain_bytes = saved_bytes_step(model, plain, inputs)  # what the benchmark measures
    checkpointed_loss, checkpointed_bytes = saved_bytes_step(model, checkpointed, inputs)
    torch.testing.assert_close(checkpointed_loss, plain_loss)
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)
    assert checkpointed_bytes < 0.7 * plain_bytes


@pytest.mark.parametrize(("model", "checkpointing"), [("dit", True), ("vae", False)])
def test_compiled_checkpointed_blocks_match_eager(model, checkpointing):
    """``parallel.compile`` (here the aot_eager backend: graph capture without a C++ toolchain) together
    with activation checkpointing gives eager's loss and gradients and keeps the state-dict names."""
    torch.manual_seed(0)
    if model == "dit":
        eager = VideoTransformer(dit_config("tiny"))
        inputs = (torch.randn(2, 128, 3, 4, 4), torch.tensor([0.3, 0.7]), torch.randn(2, 8, 32))
    else:  # noise injection draws from the global RNG, which checkpointing replays
        eager = VideoAutoencoder(vae_config("tiny"))
        inputs = (torch.rand(1, 3, 9, 32, 32) * 2 - 1, torch.tensor([0.05]))
    for parameter in eager.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    settings = ParallelSettings(activation_checkpointing=checkpointing, compile="aot_eager")
    compiled = parallelize(copy.deepcopy(eager), settings)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    losses = []
    for network in (eager, compiled):
        torch.manual_seed(1)
        output = network(*inputs)
        loss = (output[0] if isinstance(output, tuple) else output).pow(2).mean()
        loss.backward()
        losses.append(loss.detach())
        if model == "vae":
            with torch.no_grad():  # the in-place inference path, compiled too
                losses.append(network.decode(network.encode(inputs[0]).mean, inputs[1]).pow(2).mean())
    half = len(losses) // 2
    torch.testing.assert_close(torch.stack(losses[half:]), torch.stack(losses[:half]), rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_parallel_settings_are_validated():
    assert ParallelSettings.from_config({"activation_checkpointing": True}).activation_checkpointing
    with pytest.raises(ValueError, match=r"unknown parallel setting\(s\) \['checkpointing'\]"):
        ParallelSettings.from_config({"checkpointing": True})
    with pytest.raises(ValueError, match="parallel.compile='fast' is not a torch.compile backend"):
        ParallelSettings.from_config({"compile": "fast"})
    with pytest.raises(ValueError, match="parallel.param_dtype='fp8' is not one of"):
        ParallelSettings.from_config({"param_dtype": "fp8"})
