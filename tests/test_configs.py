"""Every shipped config composes, and everything it describes instantiates."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import REPO_ROOT, compose_config
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import OmegaConf

from ltx.cli.train import CONFIG_DIR, build_callbacks, build_loggers
from ltx.data.datamodule import ShardDataModule
from ltx.data.synthetic import SyntheticDataModule
from ltx.losses import WeightedLossTerms
from ltx.training.schedules import build_lr_scheduler

PRIMARY_CONFIGS = ("train_vae", "train_dit")
ALL_GROUP_OPTIONS = sorted(
    (str(path.parent.relative_to(CONFIG_DIR)), path.stem)
    for path in CONFIG_DIR.glob("*/**/*.yaml")
)
GROUP_OPTIONS = [(group, option) for group, option in ALL_GROUP_OPTIONS if not group.startswith("curation/")]
CURATION_OPTIONS = [(group, option) for group, option in ALL_GROUP_OPTIONS if group.startswith("curation/")]
HAS_GPU = torch.cuda.is_available()


def test_config_dir_is_the_repository_conf():
    assert CONFIG_DIR == REPO_ROOT / "conf"
    groups = {group for group, _ in GROUP_OPTIONS}
    assert {"model/vae", "model/dit", "loss", "data", "trainer", "logger", "experiment", "launcher"} <= groups


def overrides_for(config_name: str, group: str, option: str, shards: Path) -> list[str]:
    overrides = [f"{group}={option}"]
    if not (group == "data" and option.startswith("synthetic")):
        overrides.append(f"data.train_shards={shards}")
    if group == "trainer" and not HAS_GPU:
        overrides += ["trainer.accelerator=cpu"]  # the GPU configs, instantiated on a CPU-only machine
    return overrides


def primary_for(group: str, option: str) -> list[str]:
    if group in ("model/dit", "finetune") or (group, option) in {("data", "synthetic_latents"), ("experiment", "dit_demo")}:
        return ["train_dit"]  # configs of the DiT stage (dit_demo selects a model/dit option)
    return list(PRIMARY_CONFIGS)


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes_and_instantiates(group, option, demo_dir, tmp_path):
    for config_name in primary_for(group, option):
        overrides = overrides_for(config_name, group, option, demo_dir / "shards") + [f"run_dir={tmp_path}"]
        cfg = compose_config(config_name, overrides, return_hydra_config=True)
        assert cfg.hydra.runtime.choices[group] == option
        HydraConfig.instance().set_config(cfg)  # as in a run: ${hydra:...} interpolations resolve
        instantiate_all(cfg)


def instantiate_all(cfg) -> None:
    """Instantiate every part a training run builds from the config, except the stage's own model."""
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, ShardDataModule | SyntheticDataModule)
    loggers, callbacks = build_loggers(cfg), build_callbacks(cfg)
    assert loggers and all(isinstance(logger, Logger) for logger in loggers)
    assert all(isinstance(callback, L.Callback) for callback in callbacks)
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    assert isinstance(trainer, L.Trainer)
    assert isinstance(WeightedLossTerms(cfg.loss.terms), WeightedLossTerms)
    if cfg.optimizer._target_.endswith("adamw8bit") and not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU and this machine has none"):
            instantiate(cfg.optimizer)(torch.nn.Linear(2, 2).parameters())
        optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())  # for the schedule below
    else:
        optimizer = instantiate(cfg.optimizer)(torch.nn.Linear(2, 2).parameters())
        assert isinstance(optimizer, torch.optim.Optimizer)
    assert isinstance(build_lr_scheduler(optimizer, cfg.scheduler), torch.optim.lr_scheduler.LambdaLR)
    assert get_class(cfg.hydra.launcher._target_) is not None
    for model in cfg.model.values():
        assert_primitive(OmegaConf.to_container(model, resolve=True))


def assert_primitive(node) -> None:
    """Configs hold primitives and registry names only (no _target_ to a class, no objects)."""
    if isinstance(node, dict):
        assert "_target_" not in node
        for value in node.values():
            assert_primitive(value)
    elif isinstance(node, list):
        for value in node:
            assert_primitive(value)
    else:
        assert node is None or isinstance(node, bool | int | float | str)


@pytest.mark.parametrize("config_name", PRIMARY_CONFIGS)
def test_primary_configs_with_defaults(config_name, demo_dir, tmp_path):
    cfg = compose_config(config_name, [f"data.train_shards={demo_dir / 'shards'}", f"run_dir={tmp_path}"], return_hydra_config=True)
    assert cfg.stage == config_name.removeprefix("train_")
    instantiate_all(cfg)


def test_slurm_launcher_selects_submitit():
    cfg = compose_config("train_dit", ["launcher=slurm"], return_hydra_config=True)
    launcher = get_class(cfg.hydra.launcher._target_)
    assert launcher.__name__ == "SlurmLauncher"
    assert cfg.hydra.launcher.signal_delay_s == 90


def test_fsdp_trainer_uses_model_parallel_strategy(demo_dir, tmp_path):
    from lightning.pytorch.strategies import ModelParallelStrategy

    cfg = compose_config("train_dit", ["trainer=fsdp", "trainer.accelerator=cpu", f"run_dir={tmp_path}"])
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy, ModelParallelStrategy)


def test_mandatory_shard_path_is_reported():
    cfg = compose_config("train_vae", ["data=shards"])
    with pytest.raises(Exception, match="train_shards"):
        instantiate(cfg.data)


def test_experiment_smoke_shrinks_the_run():
    cfg = compose_config("train_vae", ["experiment=smoke"])
    assert cfg.trainer.max_steps == 2 and list(cfg.logger) == ["csv"]


@pytest.mark.parametrize(("group", "option"), CURATION_OPTIONS, ids=[f"{g}={o}" for g, o in CURATION_OPTIONS])
def test_every_curation_option_composes_and_builds_its_stage(group, option, tmp_path):
    """Stage configs name registered stages with valid keyword arguments; stages that need local weights
    refuse, naming what to provide, rather than running with random weights."""
    from data_pipeline.runner import build_stages

    stage = group.split("/")[1]
    cfg = compose_config("curate", [f"{group}={option}", f"stages=[{stage}]", f"output={tmp_path}"])
    needs = {("aesthetic", "laion"): "clip_checkpoint", ("caption", "coca"): "checkpoint_path",
             ("caption", "vlm"): "path"}
    if (stage, option) in needs:
        with pytest.raises((ValueError, TypeError, FileNotFoundError), match=needs[stage, option]):
            build_stages(cfg)
    else:
        (built,) = build_stages(cfg)
        assert built.name == stage


def test_curation_launchers_compose():
    for launcher in ("local", "slurm", "submitit_local"):
        assert compose_config("curate", [f"launcher={launcher}"]).launcher_name == launcher


@pytest.mark.skipif(HAS_GPU, reason="the CPU-only error")
def test_adamw8bit_stops_a_cpu_run_with_a_clear_error(demo_dir, tmp_path):
    """optimizer=adamw8bit is bitsandbytes' CUDA optimizer: a CPU run stops before training, saying so."""
    from ltx.cli.train import run_training

    cfg = compose_config("train_dit", ["experiment=smoke", "data=synthetic_latents", "vae_checkpoint=null",
                                       f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}", f"run_dir={tmp_path}",
                                       "optimizer=adamw8bit", "dit_training.samples=null"])
    assert cfg.optimizer.lr == 1.0e-4 and list(cfg.optimizer.betas) == [0.9, 0.999]  # the stage's values
    with pytest.raises(RuntimeError, match="optimizer=adamw8bit .* needs a CUDA GPU .* use optimizer=adamw"):
        run_training(cfg)


def test_the_vae_demo_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    from ltx.training import precision

    cfg = compose_config("train_vae", ["experiment=vae_demo"])
    assert cfg.trainer.precision == precision.cpu_precision("bf16-mixed")  # resolved for this machine
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert cfg.trainer.precision == "32-true"
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert cfg.trainer.precision == "bf16-mixed"
