"""One local SLURM cluster at a time on a machine, even when pytest-xdist runs test files in parallel."""

from __future__ import annotations

import threading

import slurm_cluster
from filelock import FileLock
from slurm_cluster import LocalSlurmCluster, SlurmUnavailable


def test_a_second_cluster_waits_for_the_first_and_the_lock_is_released_on_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm_cluster, "CLUSTER_LOCK", tmp_path / "cluster.lock")
    installs: list[str] = []

    def unavailable() -> None:
        installs.append("tried")
        raise SlurmUnavailable("test: no SLURM")

    monkeypatch.setattr(slurm_cluster, "ensure_installed", unavailable)
    first = FileLock(tmp_path / "cluster.lock", is_singleton=False)  # another process's running cluster
    first.acquire()
    outcome: list[BaseException] = []

    def enter() -> None:
        try:
            LocalSlurmCluster().__enter__()
        except SlurmUnavailable as error:
            outcome.append(error)

    waiting = threading.Thread(target=enter, daemon=True)
    waiting.start()
    waiting.join(timeout=1.0)
    assert waiting.is_alive() and installs == [], "the second cluster went ahead while the first held the lock"
    first.release()
    waiting.join(timeout=30)
    assert not waiting.is_alive() and installs == ["tried"] and len(outcome) == 1
    again = FileLock(tmp_path / "cluster.lock", is_singleton=False)
    again.acquire(timeout=5)  # the failed start released the lock: a third cluster is not blocked
    again.release()
