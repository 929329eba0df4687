"""The Makefile: self-documenting help, an environment rebuilt only when pyproject.toml changes, CI entry."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from helpers import REPO_ROOT

USER_TARGETS = ("venv", "test", "lint", "demo", "data", "latents", "train-vae", "train-dit", "sample", "convert",
                "reconstruct", "latent-stats", "bench", "bench-quick", "ablations", "ablations-quick", "registry")


def make(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["make", *args], cwd=cwd, capture_output=True, text=True, check=True)


def test_help_lists_every_target_with_a_description():
    lines = make("help").stdout.splitlines()
    described = {line.split()[0]: line.split(None, 1)[1] for line in lines if line.strip()}
    for target in USER_TARGETS:
        assert target in described and len(described[target]) > 10


def test_user_targets_depend_on_the_environment():
    rules = make("-p", "-n", "help").stdout.splitlines()
    for target in USER_TARGETS:
        if target != "venv":
            assert any(line.startswith(f"{target}: .venv/.installed") for line in rules), target


def test_environment_is_reinstalled_only_when_pyproject_changes(tmp_path):
    shutil.copy(REPO_ROOT / "Makefile", tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    stamp = tmp_path / ".venv" / ".installed"
    stamp.parent.mkdir()
    (tmp_path / ".venv" / "bin").mkdir()
    stamp.touch()
    later = time.time() + 10
    os.utime(stamp, (later, later))
    assert "pip install" not in make("-n", "venv", cwd=tmp_path).stdout
    os.utime(tmp_path / "pyproject.toml", (later + 10, later + 10))
    assert "pip install" in make("-n", "venv", cwd=tmp_path).stdout


def test_training_targets_pass_args_as_hydra_overrides():
    dry_run = make("-n", "-W", ".venv/.installed", "train-dit", "ARGS=trainer=gpu data.batch_size=4").stdout
    assert "ltx.cli.train --config-name train_dit trainer=gpu data.batch_size=4" in dry_run


def test_ci_runs_make_test():
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in script and os.access(REPO_ROOT / ".ci" / "run", os.X_OK)
