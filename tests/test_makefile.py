"""The Makefile: self-documenting help, an environment rebuilt only when pyproject.toml changes, CI entry."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from helpers import HYDRA_CONFIGS, REPO_ROOT, compose_config, demo_recipe, hydra_overrides
from omegaconf import OmegaConf

USER_TARGETS = ("venv", "test", "lint", "demo", "data", "latents", "train-vae", "train-dit", "sample", "convert",
                "reconstruct", "latent-stats", "bench", "bench-quick", "gpu-check", "gpu-wheels", "ablations", "ablations-quick", "registry")


def make(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True, check=True)


def test_help_lists_every_target_with_a_description():
    lines = make("help").stdout.splitlines()
    described = {line.split()[0]: line.split(None, 1)[1] for line in lines if line.strip()}
    for target in USER_TARGETS:
        assert target in described and len(described[target]) > 10


def test_demo_vae_steps_reach_the_vae_stage_only_when_given(tmp_path):
    def vae_arguments(*variables: str) -> list[str]:
        dry_run = make("-n", "-W", ".venv/.installed", "demo", f"DEMO_DIR={tmp_path}", *variables).stdout
        (line,) = [line for line in dry_run.replace("\\\n", " ").splitlines() if "--config-name train_vae" in line]
        return line.split()

    assert not any(word.startswith("trainer.max_steps") for word in vae_arguments())  # vae_demo's own 3,000
    assert "trainer.max_steps=6000" in vae_arguments("DEMO_VAE_STEPS=6000")
    config = compose_config("train_vae", ["experiment=vae_demo", f"demo_dir={tmp_path}", "trainer.max_steps=6000"])
    assert config.trainer.max_steps == config.scheduler.total_steps == 6000  # the wsd decay follows the steps


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


def test_make_test_runs_whole_test_files_in_parallel_workers():
    def pytest_words(*variables: str) -> list[str]:
        dry_run = make("-n", "-W", ".venv/.installed", "test", *variables).stdout
        (line,) = [line for line in dry_run.splitlines() if "-m pytest" in line]
        return line.split()

    words = pytest_words()
    assert words[words.index("-n") + 1] == "2" and words[words.index("--dist") + 1] == "loadgroup"
    words = pytest_words("TEST_WORKERS=0")  # one process, e.g. to debug a failure
    assert words[words.index("-n") + 1] == "0"
    declared = (REPO_ROOT / "pyproject.toml").read_text()
    assert '"pytest-xdist>=' in declared and '"filelock>=' in declared  # -n and the SLURM tests' lock


def strings(node) -> list[str]:
    """Every string value of a resolved config."""
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings(value)]
    return [node] if isinstance(node, str) else []


def test_demo_recipe_keeps_every_path_in_demo_dir(tmp_path):
    """`make demo DEMO_DIR=X`: every Hydra command gets demo_dir=X when its config has one, and its
    resolved config (data, VAE, text encoder, latents, run_dir) names nothing under outputs/demo and
    runs in X; every path argument of the other commands is under X."""
    demo_dir = tmp_path / "elsewhere"
    commands = demo_recipe(demo_dir)
    hydra_commands = [(module, arguments) for module, arguments in commands if module in HYDRA_CONFIGS]
    assert {module for module, _ in hydra_commands} == set(HYDRA_CONFIGS)
    for module, arguments in hydra_commands:
        config_name, overrides = hydra_overrides(module, arguments)
        cfg = OmegaConf.to_container(compose_config(config_name, overrides), resolve=True)
        if "demo_dir" in cfg:
            assert f"demo_dir={demo_dir}" in overrides, (module, overrides)
        assert not [text for text in strings(cfg) if "outputs/demo" in text], (module, overrides)
        assert cfg["run_dir"].startswith(f"{demo_dir}/"), (module, cfg["run_dir"])
    for module, arguments in commands:
        if module not in HYDRA_CONFIGS:
            paths = [argument for argument in arguments if "/" in argument]
            assert paths and all(path.startswith(f"{demo_dir}/") or path == str(demo_dir) for path in paths), \
                (module, arguments)


def test_ci_runs_make_test():
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in script and os.access(REPO_ROOT / ".ci" / "run", os.X_OK)
