"""The sbatch template and the SLURM mechanics it relies on, on a real one-node SLURM cluster.

The cluster (tests/slurm_cluster.py) installs SLURM with apt-get when it is missing (root only) and is
skipped where that is impossible. ltx.cli.train is replaced by a stub interpreter (LTX_PYTHON) that
prints its arguments, so these tests check the template, srun, signals and requeue, not training.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import LocalSlurmCluster, slurm_cluster_or_skip

TEMPLATE = Path(__file__).resolve().parents[1] / "slurm" / "train.sbatch"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalSlurmCluster]:
    with slurm_cluster_or_skip() as started:
        yield started


def wait_for(condition, timeout: float) -> bool:
    """Poll ``condition()`` until true (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def write_script(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    path.chmod(0o755)
    return path


def stub_python(directory: Path) -> Path:
    """An executable standing in for ``python``: prints its argv and the SLURM task variables. With
    STUB_SIGNAL_MARKER set it waits for SIGUSR1 and writes ``<marker>.<rank>`` when it arrives."""
    return write_script(
        directory / "stub_python",
        f"""
        #!{sys.executable}
        import os, pathlib, signal, sys, time
        rank = os.environ.get("SLURM_PROCID")
        print("STUB", rank, os.environ.get("SLURM_NTASKS"), sys.argv[1:], flush=True)
        marker = os.environ.get("STUB_SIGNAL_MARKER")
        if marker:
            def handler(signum, frame):
                pathlib.Path(f"{{marker}}.{{rank}}").write_text(signal.Signals(signum).name)
                sys.exit(0)
            signal.signal(signal.SIGUSR1, handler)
            time.sleep(120)
            sys.exit(1)
        """,
    )


@pytest.mark.slurm
def test_template_runs_one_task_per_rank_with_overrides(cluster, tmp_path):
    env = {"LTX_PYTHON": str(stub_python(tmp_path))}
    job = cluster.submit(
        TEMPLATE, ["train_dit", "run_name=slurm test"], ["--ntasks=2"], env=env, cwd=tmp_path
    )
    cluster.wait(job, timeout=60)
    output = (tmp_path / f"slurm-{job}.out").read_text()
    stub_lines = [line for line in output.splitlines() if line.startswith("STUB")]
    assert sorted(line.split()[1] for line in stub_lines) == ["0", "1"], output
    expected = "['-m', 'ltx.cli.train', '--config-name', 'train_dit', 'trainer.devices=2', "
    expected += "'trainer.num_nodes=1', 'resume=auto', 'run_name=slurm test']"
    assert all(line.endswith(expected) and line.split()[2] == "2" for line in stub_lines), output
    assert "restart_count=0" in output


@pytest.mark.slurm
def test_requeued_job_runs_again_with_restart_count(cluster, tmp_path):
    runs = tmp_path / "runs.txt"
    script = write_script(
        tmp_path / "requeue.sh",
        f"""
        #!/bin/bash
        echo "run ${{SLURM_RESTART_COUNT:-0}}" >> {runs}
        if [[ "${{SLURM_RESTART_COUNT:-0}}" == 0 ]]; then sleep 300; fi
        """,
    )
    options = ["--requeue", "--open-mode=append", f"--output={tmp_path}/requeue-%j.out"]
    job = cluster.submit(script, sbatch_options=options)
    cluster.wait_running(job)
    cluster.requeue(job)
    cluster.wait(job, timeout=60)
    assert cluster.restart_count(job) == 1
    assert runs.read_text().split("\n")[:2] == ["run 0", "run 1"]


@pytest.mark.slurm
def test_signal_reaches_the_srun_task(cluster, tmp_path):
    marker = tmp_path / "got_usr1"
    task = write_script(
        tmp_path / "task.py",
        f"""
        import pathlib, signal, sys, time
        def handler(signum, frame):
            pathlib.Path({str(marker)!r}).write_text("USR1")
            sys.exit(0)
        signal.signal(signal.SIGUSR1, handler)
        print("ready", flush=True)
        time.sleep(120)
        sys.exit(1)
        """,
    )
    script = write_script(
        tmp_path / "signal.sh",
        f"""
        #!/bin/bash
        srun {sys.executable} {task}
        """,
    )
    job = cluster.submit(script, sbatch_options=[f"--output={tmp_path}/signal-%j.out"])
    cluster.wait_running(job)
    output = tmp_path / f"signal-{job}.out"
    assert wait_for(lambda: output.exists() and "ready" in output.read_text(), 30), cluster.output_tail(job)
    cluster.signal(job, "USR1")
    cluster.wait(job, timeout=30)
    assert marker.read_text() == "USR1"


@pytest.mark.slurm
def test_template_tasks_get_the_time_limit_signal(cluster, tmp_path):
    """What Lightning's auto-requeue relies on: ``--signal=SIGUSR1@T`` (no ``B:``) reaches every srun task
    of the template. The header's @90 is overridden by @50 with a 1 minute limit (sent after 10-40 s)."""
    marker = tmp_path / "usr1"
    env = {"LTX_PYTHON": str(stub_python(tmp_path)), "STUB_SIGNAL_MARKER": str(marker)}
    options = ["--ntasks=2", "--time=1", "--signal=SIGUSR1@50"]
    job = cluster.submit(TEMPLATE, ["train_vae"], options, env=env, cwd=tmp_path)
    cluster.wait(job, timeout=70)
    assert [Path(f"{marker}.{rank}").read_text() for rank in (0, 1)] == ["SIGUSR1", "SIGUSR1"]


def test_template_without_config_prints_usage(tmp_path):
    result = subprocess.run(["bash", str(TEMPLATE)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "missing config name" in result.stderr
    assert "usage: sbatch" in result.stderr
