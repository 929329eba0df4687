"""Learning-rate schedules: their shapes, config errors, and in VAE training (manual optimisation) the
per-optimizer schedules, their logged rates and their restoration on resume."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from helpers import compose_config
from training_runs import metric_by_step, metric_files, vae_overrides

from ltx.cli.train import run_training
from ltx.registry import LR_SCHEDULES, RegistryError
from ltx.training.schedules import build_lr_scheduler, delayed_schedule

LR = 1e-3


def rates(settings: dict, steps: int) -> list[float]:
    """The learning rate each of ``steps`` optimizer steps trains at under ``settings``."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = build_lr_scheduler(optimizer, settings)
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


def settings_for(name: str, **values) -> dict:
    """``values`` restricted to what schedule ``name`` takes (constant has no decay settings)."""
    defaults = {"warmup_steps": 4, "total_steps": 14, "min_lr_ratio": 0.1, "decay_fraction": 0.5}
    taken = inspect.signature(LR_SCHEDULES.get(name)).parameters
    return {"name": name, **{key: value for key, value in {**defaults, **values}.items() if key in taken}}


@pytest.mark.parametrize("name", LR_SCHEDULES.names())
def test_every_schedule_warms_up_linearly_then_trains_at_the_full_rate(name):
    used = rates(settings_for(name), 6)
    assert used[:4] == pytest.approx([LR / 4, 2 * LR / 4, 3 * LR / 4, LR])  # (s + 1) / warmup_steps, no step at 0
    assert used[4] == pytest.approx(LR)  # the first step after warm-up: the decay starts from the full rate
    assert rates(settings_for(name, warmup_steps=0), 1) == [LR]  # no warm-up: the optimizer's rate at once


def test_constant_schedule_keeps_the_optimizers_rate():
    assert rates({"name": "constant", "warmup_steps": 0}, 50) == [LR] * 50
    assert rates(None, 3) == [LR] * 3  # no schedule configured: as before schedules existed


@pytest.mark.parametrize(("name", "quarter"), [("linear", 0.75), ("cosine", 0.5 * (1 + math.cos(math.pi / 4)))])
def test_decaying_schedules_reach_min_lr_ratio_at_total_steps_and_stay(name, quarter):
    used = rates(settings_for(name, warmup_steps=2, total_steps=10, min_lr_ratio=0.1), 14)
    floor = 0.1 * LR
    # progress (s - 2) / 8: a quarter at step 4, half at step 6, the floor at total_steps=10 and after
    assert used[4] == pytest.approx(floor + (LR - floor) * quarter)
    assert used[6] == pytest.approx((LR + floor) / 2)
    assert used[9] > floor and used[10:] == pytest.approx([floor] * 4)
    assert all(later <= earlier for earlier, later in zip(used[2:], used[3:]))  # never rises after warm-up


def test_wsd_holds_the_full_rate_then_decays_linearly_over_its_last_fraction():
    used = rates({"name": "wsd", "warmup_steps": 2, "total_steps": 20, "decay_fraction": 0.25, "min_lr_ratio": 0.1}, 24)
    floor = 0.1 * LR
    assert used[2:16] == pytest.approx([LR] * 14)  # stable until the last 25 % (5 of 20 steps) begin at step 15
    assert used[17] == pytest.approx(LR - (LR - floor) * 2 / 5)  # two fifths of the way down
    assert used[19] > floor and used[20:] == pytest.approx([floor] * 4)
    with pytest.raises(ValueError, match=r"decay_fraction must be in \(0, 1\]"):
        rates({"name": "wsd", "warmup_steps": 2, "total_steps": 20, "decay_fraction": 0.0}, 1)


def test_total_steps_follows_trainer_max_steps():
    cfg = compose_config("train_dit", ["scheduler=cosine", "trainer.max_steps=50"])
    assert cfg.scheduler.total_steps == 50 and cfg.scheduler.name == "cosine"
    assert compose_config("train_vae").scheduler == {"name": "constant", "warmup_steps": 0}  # the default


def test_unknown_schedule_lists_the_valid_names():
    with pytest.raises(RegistryError, match=r"unknown lr schedule 'step'\. Valid names: constant, cosine, linear, wsd\."):
        rates({"name": "step"}, 1)


@pytest.mark.parametrize(("settings", "message"), [
    ({"warmup_steps": 2}, "scheduler needs a name, one of: constant, cosine, linear, wsd"),
    ({"name": "constant", "min_lr_ratio": 0.1},
     "scheduler 'constant' does not take min_lr_ratio; it takes: warmup_steps"),
    ({"name": "cosine", "warmup_steps": 0, "total_steps": -1},
     r"total_steps must be a positive .*trainer.max_steps=-1"),
    ({"name": "linear", "warmup_steps": 10, "total_steps": 10},
     r"total_steps \(10\) must exceed warmup_steps \(10\)"),
    ({"name": "cosine", "warmup_steps": 0, "total_steps": 10, "min_lr_ratio": 1.5},
     r"min_lr_ratio must be in \[0, 1\]"),
    ({"name": "constant", "warmup_steps": -1}, "warmup_steps must be a whole number of optimizer steps >= 0"),
    ({"name": "cosine", "warmup_steps": 2},
     "scheduler 'cosine' needs total_steps; it takes: warmup_steps, total_steps"),
])
def test_bad_schedule_settings_are_reported(settings, message):
    with pytest.raises(ValueError, match=message):
        rates(settings, 1)


def test_delayed_schedule_counts_from_the_first_step_and_ends_with_the_run():
    cosine = {"name": "cosine", "warmup_steps": 10, "total_steps": 1000, "min_lr_ratio": 0.1}
    assert delayed_schedule(cosine, 200) == {**cosine, "total_steps": 800}
    assert delayed_schedule(cosine, 995)["total_steps"] == 11  # joins too late to finish warming up: only warms up
    assert delayed_schedule({"name": "constant", "warmup_steps": 5}, 200) == {"name": "constant", "warmup_steps": 5}


# ---- in VAE training: manual optimisation ---------------------------------------------------------------------
def vae_schedule_config(run_dir, *extra: str):
    """Six steps of the tiny VAE with the GAN from step 2; linear schedules (warm-up 2, to 0 at the end)."""
    return compose_config("train_vae", vae_overrides(
        run_dir, "data.batch_size=1", "trainer.max_steps=6", "data.batches_per_epoch=6", "callbacks.ema=null",
        "callbacks.preemption=null", "vae_training.num_preview_samples=0", "callbacks.checkpoint.every_n_train_steps=3",
        "scheduler=linear", "scheduler.warmup_steps=2", "scheduler.min_lr_ratio=0.0", f"optimizer.lr={LR}",
        f"loss.gan.lr={2 * LR}", *extra))


@pytest.fixture(scope="module")
def scheduled_vae_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("scheduled_vae")
    return run_dir, run_training(vae_schedule_config(run_dir))


def test_generator_and_discriminator_follow_their_own_schedules(scheduled_vae_run):
    run_dir, trainer = scheduled_vae_run
    metrics = run_dir / "csv" / "metrics.csv"
    generator = metric_by_step(metrics, "lr/generator")
    # total_steps = max_steps = 6: warm-up 1/2, 1, then 1 - (s - 2) / 4
    assert [generator[s] for s in range(6)] == pytest.approx([LR * f for f in (0.5, 1, 1, 0.75, 0.5, 0.25)])
    # the discriminator steps from generator step 2 on (logged before each step): its warm-up starts
    # there, and its total_steps is 6 - 2 = 4 discriminator steps
    discriminator = metric_by_step(metrics, "lr/discriminator")
    assert [discriminator[s] for s in range(6)] == pytest.approx([2 * LR * f for f in (0.5, 0.5, 0.5, 1, 1, 0.5)])
    assert sorted(metric_by_step(metrics, "train/gan_discriminator")) == [2, 3, 4, 5]
    generator_optimizer, discriminator_optimizer = (o.param_groups[0] for o in trainer.optimizers)
    assert generator_optimizer["betas"] == (0.9, 0.99) and discriminator_optimizer["betas"] == (0.5, 0.9)


def test_schedules_are_checkpointed_and_a_resumed_run_continues_the_same_curves(scheduled_vae_run, tmp_path):
    run_dir, _ = scheduled_vae_run
    (checkpoint,) = (run_dir / "checkpoints").glob("*step=3.ckpt")
    states = torch.load(checkpoint, map_location="cpu", weights_only=True)["lr_schedulers"]
    assert [state["last_epoch"] for state in states] == [3, 1]  # generator steps 0-2; discriminator step 2
    run_training(vae_schedule_config(tmp_path, f"resume='{checkpoint}'"))  # quoted: the name has '='
    (resumed,) = metric_files(tmp_path)
    assert resumed.parent.name == "resumed-step3"
    for key in ("lr/generator", "lr/discriminator", "train/loss", "train/gan_discriminator"):
        reference, after = metric_by_step(run_dir / "csv" / "metrics.csv", key), metric_by_step(resumed, key)
        assert sorted(after) == [3, 4, 5], key
        assert [after[s] for s in (3, 4, 5)] == pytest.approx([reference[s] for s in (3, 4, 5)], rel=1e-6), key
