"""Which code a run, a measurement or a results file came from: the checkout's commit, read once."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


@functools.cache
def commit(repository: Path = REPOSITORY) -> str:
    """The repository's HEAD (``+dirty`` with uncommitted changes) at this process's first call, or "unknown"
    outside a git checkout. Read once: the code that runs is the checkout the run started from, and what an
    ablation writes (results, READMEs) must not mark the next one's provenance dirty."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repository, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repository,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
