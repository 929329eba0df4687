"""``make test``'s worker groups hold: each test file runs whole on one pytest-xdist worker (its module
fixtures made once) and every ``slurm`` test runs on the same worker. Checked on a small generated suite
run the way the Makefile runs the real one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

TESTS_DIR = Path(__file__).parent

TEST_FILE = textwrap.dedent('''
    import json, os, pytest

    def record(kind, label):
        with open(os.environ["RECORD"], "a") as log:
            log.write(json.dumps({{"kind": kind, "file": "{name}", "test": label,
                                   "worker": os.environ["PYTEST_XDIST_WORKER"]}}) + "\\n")

    @pytest.fixture(scope="module")
    def made_once():
        record("fixture", "module")

    @pytest.mark.parametrize("index", range(6))
    def test_plain(made_once, index):
        record("test", f"plain{{index}}")

    @pytest.mark.slurm
    def test_on_the_cluster(made_once):
        record("test", "slurm")
''')


def test_each_file_and_the_slurm_tests_run_whole_on_one_worker(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text("from worker_groups import pytest_collection_modifyitems  # noqa: F401\n")
    names = [f"test_file{index}" for index in range(4)]
    for name in names:
        (suite / f"{name}.py").write_text(TEST_FILE.format(name=name))
    record = tmp_path / "record.jsonl"
    command = [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
               "-o", "markers=slurm: a test on the local SLURM cluster", str(suite)]
    env = {"PYTHONPATH": str(TESTS_DIR), "RECORD": str(record), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    events = [json.loads(line) for line in record.read_text().splitlines()]
    workers_by_file, fixtures_by_file, slurm_workers = defaultdict(set), defaultdict(int), set()
    for event in events:
        if event["kind"] == "fixture":
            fixtures_by_file[event["file"]] += 1
        elif event["test"] == "slurm":
            slurm_workers.add(event["worker"])
        else:
            workers_by_file[event["file"]].add(event["worker"])
    assert sum(event["kind"] == "test" for event in events) == len(names) * 7
    assert all(len(workers_by_file[name]) == 1 for name in names), dict(workers_by_file)
    assert len({worker for workers in workers_by_file.values() for worker in workers}) == 2  # both workers used
    assert len(slurm_workers) == 1, slurm_workers
    # once for the file's own tests, and at most once more for its slurm test on the cluster's worker
    assert all(1 <= fixtures_by_file[name] <= 2 for name in names), dict(fixtures_by_file)
