"""Curation through ``launcher=slurm`` on a real one-node SLURM cluster (tests/slurm_cluster.py): two
submitit array tasks over the demo's training sources write the same shards and report as a local run.

The cluster installs SLURM with apt-get when it is missing (root only) and is skipped where that is
impossible; it is stopped at the end of the module.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO_ROOT, compose_config
from slurm_cluster import LocalSlurmCluster, slurm_cluster_or_skip
from test_curation_pipeline import shard_contents

from data_pipeline.__main__ import run as curate

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
OVERRIDES = ("stages=[probe,scenes,letterbox,motion,caption]", "workers=1", "items_per_shard=2",
             "encode.preset=ultrafast", "encode.threads=1")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalSlurmCluster]:
    with slurm_cluster_or_skip() as started:
        yield started


def media_members(output: Path) -> dict[str, list[str]]:
    """The member names of every shard: the same samples with the same files."""
    members = {}
    for shard in sorted((output / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            members[shard.name] = sorted(tar.getnames())
    return members


def test_two_array_tasks_on_slurm_write_what_a_local_run_writes(cluster, demo_dir, tmp_path):
    sources = demo_dir / "train_sources.txt"
    local = tmp_path / "local"
    local_report = curate(compose_config("curate", [f"input={sources}", f"output={local}", *OVERRIDES]))
    on_slurm = tmp_path / "slurm"
    command = [sys.executable, "-m", "data_pipeline", f"input={sources}", f"output={on_slurm}", *OVERRIDES,
               "launcher=slurm", "submitit.num_tasks=2", "submitit.parameters.cpus_per_task=1",
               "submitit.parameters.timeout_min=10", f"run_dir={tmp_path / 'logs'}"]
    env = cluster.env({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)})
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:] + cluster.log_tails()

    report = json.loads((on_slurm / "report.json").read_text())
    assert report == local_report and report["unaccounted_inputs"] == [] and report["shards"] >= 2
    assert sorted(p.name for p in (on_slurm / "shards").iterdir()) == sorted(p.name for p in (local / "shards").iterdir())
    assert media_members(on_slurm) == media_members(local)
    assert shard_contents(on_slurm) == shard_contents(local)
    assert (on_slurm / "rejects.jsonl").read_text() == (local / "rejects.jsonl").read_text()

    # the work ran as two SLURM array tasks, each owning the work shards of its rank
    tasks = {int(p.name.split("-")[1].split(".")[0]): json.loads(p.read_text())["task"]
             for p in (on_slurm / "shards").glob("*.stats.json")}
    assert tasks == {index: index % 2 for index in tasks} and set(tasks.values()) == {0, 1}
    task_folders = [p for p in (on_slurm / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)]
    array_ids = {folder.name.split("_")[0] for folder in task_folders}  # submitit names them <array job>_<task>
    assert len(array_ids) == 1 and sorted(folder.name.split("_")[1] for folder in task_folders) == ["0", "1"]
    assert all(list(folder.glob("*_result.pkl")) for folder in task_folders)
    array_job = int(array_ids.pop())
    assert [cluster.state(f"{array_job}_{task}") for task in (0, 1)] == ["COMPLETED", "COMPLETED"]
