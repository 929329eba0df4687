"""Training runs in subprocesses (multi-process runs must not initialise torch.distributed in pytest)
and their CSV metrics, for the scale-out and SLURM tests."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch
from helpers import REPO_ROOT

TESTS_ON_PATH = {"PYTHONPATH": str(Path(__file__).parent)}  # lets a run's config name a callback below


def train_command(config: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "ltx.cli.train", "--config-name", config, *overrides]


def subprocess_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    return env


def run_training_process(config: str, *overrides: str, timeout: float = 600,
                         extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(train_command(config, *overrides), cwd=REPO_ROOT,
                            env={**subprocess_env(), **(extra_env or {})}, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"training failed ({result.returncode}):\n{(result.stdout + result.stderr)[-6000:]}")
    return result


def dit_overrides(demo_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    """The tiny DiT on synthetic latents, CSV logs, fp32, no periodic samples."""
    return ["logger=csv", "data=synthetic_latents", "parallel=fp32", "vae_checkpoint=null",
            f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}", f"run_dir={run_dir}",
            "trainer.log_every_n_steps=1", "dit_training.samples=null", *extra]


def vae_overrides(run_dir: Path, *extra: str) -> list[str]:
    """The tiny VAE on synthetic videos, CSV logs, fp32, the rGAN from step 2 (fixed weight). PyTorch's default
    init and log-variance: these runs compare parallel layouts step by step, and from the recipe's start
    (identity blocks, log-variance -4) the layouts' curves drifted 2-6e-5 apart within two steps (measured),
    past the 1e-5 tolerance that float summation order keeps them within from the default start."""
    return ["logger=csv", "data=synthetic_video", "parallel=fp32", f"run_dir={run_dir}", "trainer.log_every_n_steps=1",
            "model.vae.noise_injection=false", "loss.gan.adaptive_weight=false", "loss.gan.start_step=2",
            "vae_training.init=default", "vae_training.initial_logvar=null", *extra]


def metric_files(run_dir: Path) -> list[Path]:
    """``csv/metrics.csv`` of the first attempt, then those of resumed attempts in order of their step."""
    resumed = sorted((run_dir / "csv").glob("resumed-step*/metrics.csv"),
                     key=lambda path: int(path.parent.name.removeprefix("resumed-step")))
    first = run_dir / "csv" / "metrics.csv"
    return ([first] if first.exists() else []) + resumed


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def metric_by_step(path: Path, key: str) -> dict[int, float]:
    return {int(row["step"]): float(row[key]) for row in read_rows(path) if row.get(key)}


class SaveRankWeights(L.Callback):
    """Each rank writes its module's weights to ``directory/rank<r>-start.pt`` and ``-end.pt`` when training
    starts and ends (``+callbacks.rank_weights._target_=training_runs.SaveRankWeights`` with
    ``extra_env=TESTS_ON_PATH``): replicas can be compared, which a rank-0 checkpoint cannot show."""

    def __init__(self, directory: str):
        self.directory = Path(directory)

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule, when: str) -> None:
        state = {key: value.detach().cpu().clone() for key, value in pl_module.state_dict().items()}
        torch.save(state, self.directory / f"rank{trainer.global_rank}-{when}.pt")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, pl_module, "start")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, pl_module, "end")
