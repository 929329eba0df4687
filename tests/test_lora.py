"""LoRA fine-tuning of the DiT (finetune=lora): only the adapters train, checkpoints and the EMA hold only
them, resuming continues the same curve, the export is a diffusers LoRA file, and sampling / conversion
restore base + adapters."""

from __future__ import annotations

import csv

import pytest
import torch
from helpers import compose_config
from safetensors.torch import load_file

from ltx.cli.convert_checkpoint import convert
from ltx.cli.sample import load_dit_module
from ltx.cli.train import run_training
from ltx.interop.diffusers import export_transformer
from ltx.interop.lora import read_lora_file
from ltx.models.dit import VideoTransformer, dit_config
from ltx.training.dit_module import DiTModule
from ltx.training.lora import (
    DEFAULT_TARGET_MODULES,
    FinetuneSettings,
    adapter_state_dict,
    add_lora,
    scale_adapters,
)


@pytest.fixture(scope="module")
def base_dit(tmp_path_factory):
    """A 'released' tiny DiT in the diffusers layout (random weights, a non-zero output layer)."""
    torch.manual_seed(0)
    model = VideoTransformer(dit_config("tiny"))
    with torch.no_grad():
        model.proj_out.weight.normal_(0, 0.05)
    directory = export_transformer(model, tmp_path_factory.mktemp("base") / "transformer")
    return directory, {name: value.clone() for name, value in model.state_dict().items()}


def lora_config(demo_dir, run_dir, base, *extra: str):
    return compose_config("train_dit", [
        "experiment=smoke", "data=synthetic_latents", f"run_dir={run_dir}", "vae_checkpoint=null",
        f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}", "trainer.deterministic=true", "parallel=fp32",
        "finetune=lora", "finetune.rank=4", "finetune.alpha=8.0", f"model.dit.pretrained={base}",
        "trainer.max_steps=4", "data.batches_per_epoch=2", "dit_training.samples=null", "optimizer.lr=1e-2",
        "trainer.enable_checkpointing=true", "+callbacks.checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.checkpoint.dirpath={run_dir}/checkpoints", "+callbacks.checkpoint.save_last=true",
        "+callbacks.checkpoint.every_n_train_steps=2", "+callbacks.checkpoint.save_top_k=-1", *extra,
    ])


def losses(run_dir, key: str = "train/loss", file: str = "metrics.csv") -> dict[int, float]:
    with open(run_dir / "csv" / file) as handle:
        return {int(row["step"]): float(row[key]) for row in csv.DictReader(handle) if row.get(key)}


@pytest.fixture(scope="module")
def lora_run(demo_dir, base_dit, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lora_run")
    trainer = run_training(lora_config(demo_dir, run_dir, base_dit[0]))
    return run_dir, trainer


def test_settings_are_checked_and_targets_must_match():
    with pytest.raises(ValueError, match="unknown finetune.mode 'qlora'; valid: full, lora"):
        FinetuneSettings(mode="qlora")
    with pytest.raises(ValueError, match="unknown finetune settings \\['ranks'\\]"):
        FinetuneSettings.from_config({"mode": "lora", "ranks": 4})
    with pytest.raises(ValueError, match="matches no layer of the DiT"):
        add_lora(VideoTransformer(dit_config("tiny")), FinetuneSettings(mode="lora", target_modules=("to_qq",)))
    model = add_lora(VideoTransformer(dit_config("tiny")), FinetuneSettings(mode="lora", rank=2,
                                                                            target_modules=r".*\.attn1\.to_(q|v)"))
    adapted = {name.split(".lora_")[0] for name in adapter_state_dict(model)}
    assert adapted == {f"transformer_blocks.{i}.attn1.to_{x}" for i in range(2) for x in "qv"}  # a regex works
    default = add_lora(VideoTransformer(dit_config("tiny")), FinetuneSettings(mode="lora", rank=2))
    per_block = {name.split(".lora_")[0].split(".", 2)[2] for name in adapter_state_dict(default)}
    assert per_block == {f"attn{i}.{target}" for i in (1, 2) for target in DEFAULT_TARGET_MODULES[:4]} | \
        {"ff.net.0.proj", "ff.net.2"}


def test_lora_needs_a_base_to_adapt(demo_dir, tmp_path):
    cfg = lora_config(demo_dir, tmp_path, "x")
    cfg.model.dit.pretrained = None
    with pytest.raises(ValueError, match="finetune=lora adapts a released or trained DiT"):
        DiTModule(cfg)


def test_only_the_adapters_train_and_the_base_stays_bit_identical(lora_run, base_dit):
    run_dir, trainer = lora_run
    module = trainer.lightning_module
    steps = losses(run_dir)
    assert sorted(steps) == [0, 1, 2, 3]
    state = module.transformer.state_dict()
    for name, original in base_dit[1].items():  # base weights live on as ...base_layer.weight
        key = name if name in state else name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(state[key], original), name
    adapters = adapter_state_dict(module.transformer)
    assert any(value.abs().max() > 0 for name, value in adapters.items() if "lora_B" in name)  # B left zero init
    optimized = [p for group in trainer.optimizers[0].param_groups for p in group["params"]]
    assert len(optimized) == len(adapters) and all(p.requires_grad for p in optimized)


def test_checkpoints_hold_only_adapters_and_their_ema(lora_run):
    run_dir, _ = lora_run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    transformer_keys = [k for k in checkpoint["state_dict"] if k.startswith("transformer.")]
    assert transformer_keys and all(".lora_A." in k or ".lora_B." in k for k in transformer_keys)
    ema_keys = [k for k in checkpoint["state_dict"] if k.startswith("ema.")]
    assert len(ema_keys) == len(transformer_keys) + 1  # the averaged adapters and num_updates
    assert not any(k.startswith("ema.module.") for k in ema_keys)
    assert len(checkpoint["optimizer_states"][0]["state"]) == len(transformer_keys)


def test_resume_continues_the_same_loss_curve(lora_run, demo_dir, base_dit, tmp_path):
    run_dir, _ = lora_run
    step2 = run_dir / "checkpoints" / "epoch=0-step=2.ckpt"
    assert step2.exists(), sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    run_training(lora_config(demo_dir, tmp_path, base_dit[0], f"resume='{step2}'"))
    reference, resumed = losses(run_dir), losses(tmp_path, file="resumed-step2/metrics.csv")
    assert sorted(resumed) == [2, 3]
    for step, value in resumed.items():
        assert value == pytest.approx(reference[step], rel=1e-6), step


def test_export_sampling_and_conversion_restore_base_plus_adapters(lora_run, base_dit, tmp_path):
    run_dir, trainer = lora_run
    adapters, config = read_lora_file(run_dir / "export" / "transformer")
    assert (config.r, config.lora_alpha) == (4, 8.0)
    averaged = {name.removeprefix("ema.averages.").replace("__", ".").replace(".default.", "."): value
                for name, value in torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                                              weights_only=True)["state_dict"].items() if name.startswith("ema.averages.")}
    assert adapters.keys() == averaged.keys()
    for name, value in adapters.items():
        torch.testing.assert_close(value, averaged[name], rtol=0, atol=0)  # the export is the EMA adapters

    module = load_dit_module(run_dir / "checkpoints" / "last.ckpt")  # base from model.dit.pretrained + EMA adapters
    for name, value in adapter_state_dict(module.transformer).items():
        torch.testing.assert_close(value, adapters[name], rtol=0, atol=0)
    base = VideoTransformer(dit_config("tiny")).eval()
    base.load_state_dict(base_dit[1])
    latents, text = torch.randn(1, 128, 2, 2, 2), torch.randn(1, 4, 32)
    with torch.no_grad():
        adapted = module.transformer(latents, torch.tensor([0.5]), text)
        scale_adapters(module.transformer, 0.0)
        torch.testing.assert_close(module.transformer(latents, torch.tensor([0.5]), text),
                                   base(latents, torch.tensor([0.5]), text))  # scale 0: the base model
        assert (adapted - base(latents, torch.tensor([0.5]), text)).abs().max() > 1e-4

    output = convert(run_dir / "checkpoints" / "last.ckpt", tmp_path / "converted")
    assert (output / "lora" / "pytorch_lora_weights.safetensors").exists()
    merged = VideoTransformer(dit_config("tiny")).eval()
    merged.load_state_dict(load_file(str(output / "model.safetensors")))
    with torch.no_grad():
        torch.testing.assert_close(merged(latents, torch.tensor([0.5]), text), adapted, atol=1e-5, rtol=0)


def test_the_frozen_base_can_be_held_in_bf16():
    model = add_lora(VideoTransformer(dit_config("tiny")), FinetuneSettings(mode="lora", rank=2, base_dtype="bfloat16"))
    dtypes = {name: parameter.dtype for name, parameter in model.named_parameters()}
    assert all(dtype == torch.float32 for name, dtype in dtypes.items() if ".lora_" in name)
    assert all(dtype == torch.bfloat16 for name, dtype in dtypes.items() if ".lora_" not in name)
    latents, text = torch.randn(1, 128, 2, 2, 2, dtype=torch.bfloat16), torch.randn(1, 4, 32, dtype=torch.bfloat16)
    output = model(latents, torch.tensor([0.5]), text)
    output.float().square().mean().backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())
