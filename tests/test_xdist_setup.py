"""What tests/conftest.py does for ``make test``'s pytest-xdist workers: the groups and each worker's threads."""

from __future__ import annotations

import os
from pathlib import Path

import conftest
import pytest
import torch


class FakeItem:
    def __init__(self, file: str, *markers: str) -> None:
        self.path = Path("tests") / file
        self.markers = {name: getattr(pytest.mark, name) for name in markers}
        self.groups: list[str] = []

    def get_closest_marker(self, name: str):
        return self.markers.get(name)

    def add_marker(self, marker) -> None:
        assert marker.name == "xdist_group"
        self.groups.append(marker.args[0])


def test_slurm_tests_share_one_group_and_every_other_test_goes_with_its_file():
    items = [FakeItem("test_slurm_training.py", "slurm", "slow"), FakeItem("test_slurm_curation.py", "slurm"),
             FakeItem("test_slurm_cluster.py"), FakeItem("test_experiments.py"), FakeItem("test_experiments.py")]
    conftest.pytest_collection_modifyitems(None, items)
    assert [item.groups for item in items] == [["local_slurm_cluster"], ["local_slurm_cluster"],
                                               ["test_slurm_cluster.py"], ["test_experiments.py"],
                                               ["test_experiments.py"]]


def test_each_worker_takes_its_share_of_the_cores(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    try:
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1")
        conftest.pytest_configure(None)  # one process: torch keeps its default
        assert torch.get_num_threads() == before and "OMP_NUM_THREADS" not in os.environ
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
        conftest.pytest_configure(None)
        assert torch.get_num_threads() == 2
        assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "2"  # processes the tests start
    finally:
        torch.set_num_threads(before)
