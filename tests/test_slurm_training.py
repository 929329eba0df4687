"""Training through the sbatch template on a real one-node SLURM cluster: two tasks train the tiny DiT
with FSDP2, and a job that gets the pre-emption signal checkpoints, requeues itself and resumes.

The cluster (tests/slurm_cluster.py) installs SLURM with apt-get when it is missing (root only) and is
skipped where that is impossible; it is stopped at the end of the module.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO_ROOT
from slurm_cluster import LocalSlurmCluster, slurm_cluster_or_skip
from training_runs import metric_by_step, metric_files

from ltx.training.checkpoints import checkpoint_step, is_complete_checkpoint, read_distributed_state_dict

TEMPLATE = REPO_ROOT / "slurm" / "train.sbatch"
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalSlurmCluster]:
    with slurm_cluster_or_skip() as started:
        yield started


def submit_dit(cluster: LocalSlurmCluster, demo_dir: Path, workdir: Path, run_name: str, *overrides: str) -> int:
    """The template with 2 tasks: FSDP2 over gloo, the tiny DiT on synthetic latents, CSV logs. The run
    directory is left to the config: outputs/runs/<run_name>/<SLURM_JOB_ID> under the submit directory."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = ["train_dit", "trainer=fsdp", "trainer.accelerator=cpu", "logger=csv", "data=synthetic_latents",
            "parallel=fp32", "vae_checkpoint=null", f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}",
            "trainer.log_every_n_steps=1", "dit_training.samples=null", f"run_name={run_name}", *overrides]
    env = {"LTX_PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return cluster.submit(TEMPLATE, args, sbatch_options=["--ntasks-per-node=2"], env=env, cwd=workdir)


def optimizer_step_count(checkpoint: Path) -> int:
    key = "optimizer_0.state.transformer.proj_in.weight.step"
    return int(read_distributed_state_dict(checkpoint, prefix=key)[""].item())


def test_two_tasks_train_the_dit_with_fsdp(cluster, demo_dir, tmp_path):
    job = submit_dit(cluster, demo_dir, tmp_path, "fsdp", "trainer.max_steps=4", "data.batches_per_epoch=2",
                     "callbacks.checkpoint.every_n_train_steps=2")
    cluster.wait(job, timeout=300)
    run_dir = tmp_path / "outputs" / "runs" / "fsdp" / str(job)  # named by SLURM_JOB_ID
    assert sorted(metric_by_step(run_dir / "csv" / "metrics.csv", "train/loss")) == [0, 1, 2, 3]
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert is_complete_checkpoint(checkpoint) and checkpoint_step(checkpoint) == 4
    assert sorted(p.name for p in checkpoint.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert optimizer_step_count(checkpoint) == 4
    assert "restart_count=0" in cluster.output_tail(job, lines=400)


def test_preempted_job_checkpoints_requeues_and_resumes(cluster, demo_dir, tmp_path):
    max_steps = 60
    job = submit_dit(cluster, demo_dir, tmp_path, "requeue", f"trainer.max_steps={max_steps}",
                     "data.batches_per_epoch=25", "callbacks.checkpoint.every_n_train_steps=5")
    run_dir = tmp_path / "outputs" / "runs" / "requeue" / str(job)
    first_checkpoint = run_dir / "checkpoints" / "epoch=0-step=5.ckpt"
    deadline = time.monotonic() + 300
    while not is_complete_checkpoint(first_checkpoint):
        assert cluster.state(job) in ("PENDING", "RUNNING", "CONFIGURING"), cluster.output_tail(job)
        assert time.monotonic() < deadline, cluster.output_tail(job)
        time.sleep(0.2)
    cluster.signal(job, "USR1")  # what `#SBATCH --signal=SIGUSR1@90` sends before the time limit
    cluster.expedite(job, timeout=120)  # the job requeued itself; lift SLURM's start delay
    cluster.wait(job, timeout=300)
    assert cluster.restart_count(job) == 1

    preempted = sorted((run_dir / "checkpoints").glob("preempted-step=*.ckpt"))
    assert len(preempted) == 1 and is_complete_checkpoint(preempted[0])
    step = checkpoint_step(preempted[0])
    assert 5 <= step < max_steps

    files = metric_files(run_dir)
    assert [path.parent.name for path in files] == ["csv", f"resumed-step{step}"]
    before, after = (metric_by_step(path, "train/loss") for path in files)
    assert max(before) == step - 1  # the first run stopped right after the checkpointed step
    assert sorted(after) == list(range(step, max_steps))  # the second started there: nothing repeated or lost
    final = run_dir / "checkpoints" / "last.ckpt"
    assert checkpoint_step(final) == max_steps
    assert optimizer_step_count(final) == max_steps  # Adam's state came through the requeue (not restarted)
    log = cluster.output_tail(job, lines=2000)
    assert "restart_count=0" in log and "restart_count=1" in log


def test_submitit_launcher_takes_the_same_overrides(cluster, demo_dir, tmp_path):
    """`launcher=slurm -m` (hydra-submitit-launcher) submits the same training to the cluster."""
    overrides = ["launcher=slurm", "hydra.launcher.tasks_per_node=2", "hydra.launcher.cpus_per_task=1",
                 f"hydra.sweep.dir={tmp_path / 'multirun'}", "trainer=fsdp", "trainer.accelerator=cpu", "logger=csv",
                 "data=synthetic_latents", "parallel=fp32", "vae_checkpoint=null",
                 f"text_encoder.kwargs.path={demo_dir / 'text_encoder'}", "trainer.log_every_n_steps=1",
                 "dit_training.samples=null", "run_name=submitit", "trainer.max_steps=3", "data.batches_per_epoch=3"]
    env = cluster.env({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    result = subprocess.run([sys.executable, "-m", "ltx.cli.train", "--config-name", "train_dit", *overrides, "-m"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (run_dir,) = (tmp_path / "outputs" / "runs" / "submitit").iterdir()  # named by the SLURM job id
    assert run_dir.name.isdigit()
    assert sorted(metric_by_step(run_dir / "csv" / "metrics.csv", "train/loss")) == [0, 1, 2]
    assert sorted(p.name for p in (run_dir / "checkpoints" / "last.ckpt").glob("*.distcp")) == [
        "__0_0.distcp", "__1_0.distcp"]
