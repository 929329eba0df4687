"""How ``make test`` (``pytest -n 2 --dist loadgroup``) shares the suite between its worker processes.

Each test file is one group, handed whole to one worker, so its module fixtures (a quick ablation run,
a demo, a benchmark) are made once; every test marked ``slurm`` (a local SLURM cluster, one at a time per
machine) goes to one group, so no worker sits waiting for another's cluster.

The hook runs first: pytest-xdist's worker reads the ``xdist_group`` markers in its own
``pytest_collection_modifyitems`` to name each test's group, and pluggy would otherwise call that one
before this conftest's, when no test has a marker yet and every test is a group of its own.
"""

from __future__ import annotations

import pytest

SLURM_GROUP = "local_slurm_cluster"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        group = SLURM_GROUP if item.get_closest_marker("slurm") else item.path.name
        item.add_marker(pytest.mark.xdist_group(group))
