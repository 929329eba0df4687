"""The prepared GPU check (benchmarks/gpu_check.py) and the way to the GPU machine (benchmarks/gpu_wheels.py).

The dry run (tiny sizes, CPU, gloo) runs here as the GPU machine would run it: the pinned wheels are
downloaded (the registry is reachable here and in CI), installed with ``pip install --no-deps --target``
as the device command does, and an import hook (a ``sitecustomize`` on PYTHONPATH, so the FSDP child
process has it too) makes every package those wheels provide load from the target folder and every one
of our dependencies the machine's image lacks fail to import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import pytest
from helpers import REPO_ROOT, compose_config

from benchmarks import gpu_check, gpu_wheels
from benchmarks.gpu_budget import Budget, choose_size

# Our dependencies that the GPU machine's image does not hold and the wheels do not carry: the check must
# not import them (the device tool's KINDS.md lists what the image holds).
ABSENT_ON_DEVICE = ("av", "pywt", "pytorch_wavelets", "lpips", "open_clip", "scenedetect", "submitit", "wandb",
                    "bitsandbytes", "hydra_plugins")
DEVICE_IMAGE_HOOK = '''
import importlib.machinery, os, sys

SITE = os.environ["GPU_CHECK_SITE"]
PROVIDED = set(os.environ["GPU_CHECK_PROVIDED"].split(","))
ABSENT = set(os.environ["GPU_CHECK_ABSENT"].split(","))


class DeviceImage(importlib.machinery.PathFinder):
    """sys.path's finder, except that top-level packages the wheels provide are found in SITE only and
    those the image lacks are not found at all (as importlib.util.find_spec sees it on the machine)."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if "." not in name and name in ABSENT:
            return None
        if "." not in name and name in PROVIDED:
            return importlib.machinery.PathFinder.find_spec(name, [SITE])
        return importlib.machinery.PathFinder.find_spec(name, path, target)


sys.meta_path[:] = [DeviceImage if finder is importlib.machinery.PathFinder else finder for finder in sys.meta_path]
'''


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_choose_size_takes_the_largest_that_fits_and_says_when_it_shrinks():
    cost = {24000: 90.0, 15360: 50.0, 8192: 20.0}.__getitem__
    assert choose_size([24000, 15360, 8192], cost, 100.0) == (24000, "")
    size, note = choose_size([24000, 15360, 8192], cost, 60.0, describe=lambda n: f"{n} tokens")
    assert size == 15360
    assert note == "shrunk from 24000 tokens (predicted 90 s) to 15360 tokens (predicted 50 s): 60 s left"
    size, note = choose_size([24000, 15360, 8192], cost, 10.0)
    assert size is None and note.startswith("skipped: even 8192 would take 20 s")
    with pytest.raises(ValueError, match="at least one candidate"):
        choose_size([], cost, 1.0)


def test_budget_cuts_a_section_share_to_what_the_check_has_left():
    clock = FakeClock()
    budget = Budget(100.0, {"a": 30.0, "b": 90.0}, clock=clock)
    with pytest.raises(RuntimeError, match="call start_section first"):
        budget.section_left()
    budget.start_section("a")
    clock.now += 10
    assert budget.section_left() == 20.0 and budget.total_left() == 90.0
    clock.now += 30
    assert budget.section_left() == 0.0
    budget.start_section("b")
    assert budget.section_left() == 60.0  # the share is 90 s, the check has 60 s left
    with pytest.raises(ValueError, match="no time share for section 'c'; sections: a, b"):
        budget.start_section("c")
    with pytest.raises(ValueError, match="must be positive"):
        Budget(0.0, {"a": 1.0})


def test_the_gpu_plan_fits_the_device_limits():
    plan = gpu_check.GPU_PLAN
    assert set(plan.shares) == set(gpu_check.SECTIONS)
    assert sum(plan.shares.values()) <= plan.total_s <= 8 * 60  # the 8 minutes, imports aside
    assert [grid[0][0] * grid[0][1] * grid[0][2] for grid in plan.dit_grids] == [6144, 24000]
    assert plan.vae_clips[0] == plan.sample_clips[0] == (121, 512, 768) and plan.vae_train_clip == (17, 256, 256)
    assert plan.sample_steps == 40 and plan.fsdp_steps == 10
    command = gpu_wheels.DEVICE_COMMAND.format(dest=gpu_wheels.DEFAULT_DEST)
    assert len(command) <= 2000  # the device tool's command limit


def test_the_gpu_plans_fsdp_command_line_composes_the_2b_width_on_nccl(tmp_path):
    from benchmarks.gpu_sections_pipeline import fsdp_overrides

    plan = gpu_check.GPU_PLAN
    config = compose_config("train_dit", fsdp_overrides(plan, tmp_path / "run", tmp_path / "t5", 4096))
    assert config.trainer.accelerator == "gpu" and config.trainer.devices == 1 and config.trainer.max_steps == 10
    assert "FullyShardedStrategy" in config.trainer.strategy._target_
    assert config.model.dit.preset == "ltx-video-2b-0.9.1" and dict(config.model.dit.overrides) == {"num_layers": 4}
    assert config.parallel.activation_checkpointing and config.parallel.param_dtype == "bfloat16"
    assert list(config.data.latent_shape) == [16, 16, 24] and config.data.text_dim == 4096
    assert config.callbacks.checkpoint.every_n_train_steps == 10 and config.run_dir == str(tmp_path / "run")


def test_without_a_gpu_the_check_asks_for_the_dry_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        gpu_check.main(["--out", str(tmp_path)])
    assert "no CUDA device here" in capsys.readouterr().err


def test_a_large_size_that_would_not_fit_is_shrunk_and_the_report_says_so(tmp_path):
    huge, fits = (64, 64, 64), (3, 4, 8)  # 262,144 tokens would take hours on CPU
    # an hour for the section: the small size fits however loaded the machine is, the huge one never does
    plan = replace(gpu_check.DRY_PLAN, dit_grids=(((2, 2, 4),), (huge, fits)), total_s=3600 + gpu_check.DRY_PLAN.grace_s,
                   shares={**gpu_check.DRY_PLAN.shares, "dit_train": 3600})
    (result,) = gpu_check.run_check(plan, tmp_path, ["dit_train"])
    assert result.status == "ok", result.error
    assert {row["case"].rsplit(", ", 1)[0] for row in result.rows} == {"16 tokens (2x2x4)", "96 tokens (3x4x8)"}
    (note,) = [note for note in result.notes if note.startswith("large size")]
    assert note.startswith("large size: shrunk from 262144 tokens (64x64x64) (predicted ")
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["sections"]["dit_train"]["notes"] == result.notes


def test_sections_past_the_checks_time_are_reported_as_not_run(tmp_path):
    results = gpu_check.run_check(gpu_check.DRY_PLAN, tmp_path, ["gemm", "vae"], total_s=1e-9)
    assert [result.status for result in results] == ["not run", "not run"]
    sections = json.loads((tmp_path / "gpu_check.json").read_text())["sections"]
    assert sections["vae"]["notes"] == ["not run: the check's time is spent"]
    assert "## gemm: not run" in (tmp_path / "gpu_check.md").read_text()


def test_a_section_past_its_hard_limit_is_stopped_and_the_next_one_runs(tmp_path, monkeypatch):
    def stuck(context, result):
        result.add("before the stop", value=1)
        time.sleep(30)

    def quick(context, result):
        result.add("ran", value=2)

    monkeypatch.setitem(gpu_check.SECTION_FUNCTIONS, "gemm", stuck)
    monkeypatch.setitem(gpu_check.SECTION_FUNCTIONS, "vae", quick)
    plan = replace(gpu_check.DRY_PLAN, shares={**gpu_check.DRY_PLAN.shares, "gemm": 0.2}, grace_s=0.3)
    start = time.perf_counter()
    stopped, ran = gpu_check.run_check(plan, tmp_path, ["gemm", "vae"])
    assert time.perf_counter() - start < 10
    assert (stopped.status, stopped.error) == ("timed out", "stopped at its hard limit of 0.5 s (share + grace)")
    assert stopped.rows == [{"case": "before the stop", "value": 1}] and ran.status == "ok"
    assert "## gemm: timed out" in (tmp_path / "gpu_check.md").read_text()


def test_wheel_list_is_pinned_and_unpinned_lines_are_refused(tmp_path):
    pinned = gpu_wheels.requirements()
    assert {line.split("==")[0].lower() for line in pinned} >= {"diffusers", "hydra-core", "omegaconf"}
    listing = tmp_path / "wheels.txt"
    listing.write_text("diffusers==0.35.2  # ok\n\nomegaconf\n")
    with pytest.raises(ValueError, match=r"wheels.txt:3: 'omegaconf' is not pinned"):
        gpu_wheels.requirements(listing)


@pytest.fixture(scope="module")
def device_site(tmp_path_factory):
    """The wheels downloaded as `make gpu-wheels` does and installed as the device command does."""
    root = tmp_path_factory.mktemp("gpu_wheels")
    wheels = gpu_wheels.download(root / "whl")
    site = root / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--target", str(site), *map(str, wheels)]
    result = subprocess.run(install, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return wheels, site


def test_every_pinned_wheel_installs_into_a_clean_target(device_site):
    wheels, site = device_site
    assert len(wheels) == len(gpu_wheels.requirements())
    assert all(wheel.name.endswith("-none-any.whl") for wheel in wheels)  # nothing tied to this Python
    def normalized(name: str) -> str:
        return name.lower().replace("_", "-").replace(".", "-")

    installed = {(normalized(path.name.split("-")[0]), path.name.removesuffix(".dist-info").split("-")[1])
                 for path in site.glob("*.dist-info")}
    wanted = {(normalized(name), version) for name, version in (r.split("==") for r in gpu_wheels.requirements())}
    assert installed == wanted
    tree = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    tracked = sum((REPO_ROOT / name).stat().st_size for name in tree.decode().split("\0")
                  if name and (REPO_ROOT / name).is_file())
    assert tracked + sum(wheel.stat().st_size for wheel in wheels) < 64 * 2**20  # what a device call carries


@pytest.fixture(scope="module")
def device_env(device_site, tmp_path_factory):
    """The environment of a process that imports as on the GPU machine: the wheels' packages from the target
    folder, the packages the image lacks unimportable."""
    _, site = device_site
    hook = tmp_path_factory.mktemp("device_image_hook")
    (hook / "sitecustomize.py").write_text(textwrap.dedent(DEVICE_IMAGE_HOOK))
    provided = sorted({path.name.removesuffix(".py") for path in site.iterdir()
                       if not path.name.endswith(".dist-info") and path.name not in ("bin", "__pycache__")})
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(site), str(REPO_ROOT)]),
            "GPU_CHECK_SITE": str(site), "GPU_CHECK_PROVIDED": ",".join(provided),
            "GPU_CHECK_ABSENT": ",".join(ABSENT_ON_DEVICE), "OMP_NUM_THREADS": "2"}


@pytest.fixture(scope="module")
def dry_run(device_env, tmp_path_factory):
    """``python -m benchmarks.gpu_check --dry-run`` as on the GPU machine."""
    out = tmp_path_factory.mktemp("gpu_check")
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--out", str(out)],
                            cwd=REPO_ROOT, env=device_env, capture_output=True, text=True, timeout=900)
    return result, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_device_imports_come_from_the_wheels(device_env):
    probe = ("import importlib.util, json, diffusers, hydra, omegaconf, webdataset\n"
             "print(json.dumps({'files': [m.__file__ for m in (diffusers, hydra, omegaconf, webdataset)],"
             " 'absent': [n for n in ('av', 'pywt', 'wandb') if importlib.util.find_spec(n) is not None]}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=device_env, capture_output=True,
                            text=True, check=True)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(path.startswith(device_env["GPU_CHECK_SITE"]) for path in seen["files"]), seen
    assert seen["absent"] == []


def test_dry_run_succeeds_with_the_device_imports(dry_run):
    result, _, _ = dry_run
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]


def test_dry_run_reports_every_section(dry_run):
    result, report, table = dry_run
    sections = report["sections"]
    assert list(sections) == list(gpu_check.SECTIONS)
    for name, section in sections.items():
        assert section["status"] == "ok", f"{name}: {section['error']}"
        assert f"## {name}: ok" in table
    assert report["machine"]["plan"] == "dry-run" and report["machine"]["device"] == "cpu"


def test_dry_run_numbers_hold_together(dry_run):
    _, report, _ = dry_run
    rows = {name: {row["case"]: row for row in section["rows"]} for name, section in report["sections"].items()}
    assert len(rows["correctness"]) == 4 and all(row["met"] for row in rows["correctness"].values())
    assert all(row["relative"] < 1e-5 for case, row in rows["correctness"].items() if case.endswith("fp32"))
    dit, compiled = rows["dit_train"], rows["dit_compiled"]
    for grid in ("16 tokens (2x2x4)", "96 tokens (3x4x8)"):
        mine, theirs = dit[f"{grid}, ours"], dit[f"{grid}, diffusers"]
        assert mine["first_loss"] == pytest.approx(theirs["first_loss"], rel=2e-2)  # same weights, bf16
        assert mine["tokens_per_s"] == pytest.approx(int(grid.split()[0]) / mine["step_s"])
        assert mine["min_s"] <= mine["step_s"] <= mine["max_s"] and mine["tflop_per_s"] > 0 and mine["mfu"] > 0
        assert mine["speed_vs_diffusers"] == pytest.approx(theirs["step_s"] / mine["step_s"])
        fresh = compiled[f"{grid}, ours compiled"]  # a fresh model with the same seed: the same first loss
        assert fresh["first_loss"] == pytest.approx(mine["first_loss"], rel=1e-3) and fresh["compile_s"] is not None
        assert fresh["tflop_per_s"] == pytest.approx(mine["tflop_per_s"] * mine["step_s"] / fresh["step_s"])
    (fsdp,) = rows["fsdp"].values()
    assert fsdp["met"] and fsdp["backend"] == "gloo" and fsdp["steps_logged"] == 3
    assert fsdp["checkpoint_complete"] and fsdp["checkpoint_step"] == 3 and fsdp["checkpoint_GiB"] > 0
    vae = rows["vae"]
    losses = [row["first_loss"] for case, row in vae.items() if case.startswith("training step")]
    assert len(losses) == 2 and losses[0] == pytest.approx(losses[1], rel=1e-2)
    assert {case.rsplit(", ", 1)[1] for case in vae if case.startswith("encode + decode")} == {"ours", "diffusers"}
    sampling = list(rows["sampling"].values())
    assert [row["case"].rsplit(", ", 1)[1] for row in sampling] == ["ours", "diffusers"]
    assert all(row["finite"] and row["transformer_passes"] == 2 for row in sampling)
    assert sampling[0]["video_shape"] == [1, 3, 9, 64, 64]
