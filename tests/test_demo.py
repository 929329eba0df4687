"""`make demo DEMO_DIR=...` end to end, shortened: the recipe's own commands (from a dry run of the Makefile)
run into a temporary DEMO_DIR from an empty working directory, so nothing under outputs/demo can be read or
written; the latents record the demo's VAE and latent statistics, and sampling refuses other ones."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import compose_config, demo_recipe, hydra_overrides
from safetensors.torch import save_file

from data_pipeline.__main__ import run as curate_run
from ltx.cli import latent_stats, precompute, reconstruct, report_card, sample
from ltx.cli.train import run_training
from ltx.data import inspect
from ltx.training.build import read_latent_statistics, vae_from_checkpoint
from ltx.training.latent_record import (
    RECORD_KEY,
    LatentRecord,
    statistics_fingerprint,
    vae_weights_fingerprint,
)

pytestmark = pytest.mark.slow

HYDRA_RUNS = {"data_pipeline": curate_run, "ltx.cli.train": run_training, "ltx.cli.latent_stats": latent_stats.run,
              "ltx.cli.precompute": precompute.run, "ltx.cli.sample": sample.run}
SHORTER = {  # appended to the recipe's overrides: a few steps, small samples (about a minute in all)
    "curate": ["workers=1", "encode.preset=ultrafast"],
    "train_vae": ["trainer.max_steps=2", "data.batches_per_epoch=2", "callbacks.checkpoint.every_n_train_steps=2",
                  "scheduler.warmup_steps=0", "vae_training.num_preview_samples=1"],
    "latent_stats": ["batches=2"],
    "precompute": [],
    "train_dit": ["trainer.max_steps=2", "data.batches_per_epoch=2", "callbacks.checkpoint.every_n_train_steps=2",
                  "dit_training.samples.num_steps=2", "dit_training.samples.frames=9",
                  "dit_training.samples.height=64", "dit_training.samples.width=64", "scheduler.warmup_steps=0",
                  "callbacks.adherence.num_prompts=2", "callbacks.adherence.num_steps=2", "callbacks.adherence.frames=9"],
    "sample": ["num_steps=2", "frames=9", "height=64", "width=64"],
}
SHORTER_ARGUMENTS = {"--batches": "1", "--frames": "9"}  # of the argparse commands


def shorter_arguments(arguments: list[str]) -> list[str]:
    return [SHORTER_ARGUMENTS.get(before, argument) for before, argument in zip(["", *arguments], arguments)]


def run_step(module: str, arguments: list[str], generated_demo) -> None:
    """One command of the recipe, in this process."""
    if module == "data_pipeline.demo":  # the session's demo data, made by the same generator
        assert arguments[0] == "--output", arguments  # the world's size flags made the session's demo too
        shutil.copytree(generated_demo, arguments[1])
    elif module == "ltx.data.inspect":
        inspect.main(shorter_arguments(arguments))
    elif module == "ltx.cli.reconstruct":
        reconstruct.main(shorter_arguments(arguments))
    elif module == "ltx.cli.report_card":
        report_card.main([*arguments, "--prompts", "2", "--i2v-prompts", "1", "--num-steps", "2",
                          "--height", "64", "--width", "64"])
    elif module in HYDRA_RUNS:
        config_name, overrides = hydra_overrides(module, arguments)
        HYDRA_RUNS[module](compose_config(config_name, [*overrides, *SHORTER[config_name]]))
    else:
        raise AssertionError(f"`make demo` runs {module}, which this test does not know: add it to run_step")


@pytest.fixture(scope="module")
def demo_run(demo_dir, tmp_path_factory):
    """The working directory the recipe ran from (left empty) and its DEMO_DIR."""
    root = tmp_path_factory.mktemp("make_demo")
    workdir, target = root / "workdir", root / "demo"
    workdir.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        for module, arguments in demo_recipe(target):
            run_step(module, arguments, demo_dir)
    return workdir, target


def test_demo_writes_into_demo_dir_only(demo_run):
    workdir, target = demo_run
    assert not list(workdir.iterdir())  # no outputs/ (outputs/demo or any other) beside the run
    for name in ("curated/report.json", "vae_run/checkpoints/last.ckpt", "reconstruction.mp4",
                 "latent_stats.safetensors", "latents/train", "latents/val", "dit_run/checkpoints/last.ckpt",
                 "sample.mp4", "sample_i2v.mp4"):
        assert (target / name).exists(), name


def test_demo_latents_record_the_demo_vae_and_statistics(demo_run):
    _, target = demo_run
    vae_checkpoint, stats_file = target / "vae_run" / "checkpoints" / "last.ckpt", target / "latent_stats.safetensors"
    mean, std = read_latent_statistics(stats_file)
    assert not (torch.allclose(mean, torch.zeros_like(mean)) and torch.allclose(std, torch.ones_like(std)))
    expected = LatentRecord(str(vae_checkpoint.resolve()), None, vae_weights_fingerprint(vae_from_checkpoint(vae_checkpoint)),
                            str(stats_file.resolve()), statistics_fingerprint(mean, std))
    stats_files = sorted((target / "latents").glob("*/*.stats.json"))
    assert {path.parent.name for path in stats_files} == {"train", "val"}
    for path in stats_files:
        assert LatentRecord.from_dict(json.loads(path.read_text())[RECORD_KEY]) == expected, path


def perturbed_vae_checkpoint(source, destination) -> None:
    """A copy of a VAE-stage checkpoint with every floating-point weight (EMA ones included) scaled."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = {k: v * 1.01 if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, destination)


def test_sampling_refuses_another_vae_or_other_statistics(demo_run, tmp_path):
    _, target = demo_run
    recipe_sample = next(arguments for module, arguments in demo_recipe(target) if module == "ltx.cli.sample")
    other_stats = tmp_path / "other_stats.safetensors"
    mean, std = read_latent_statistics(target / "latent_stats.safetensors")
    save_file({"latents_mean": mean + 1, "latents_std": std}, str(other_stats))
    other_vae = tmp_path / "other_vae.ckpt"
    perturbed_vae_checkpoint(target / "vae_run" / "checkpoints" / "last.ckpt", other_vae)
    for override, given in ((f"latent_stats={other_stats}", "latent_stats"), (f"vae_checkpoint={other_vae}", "vae_checkpoint")):
        cfg = compose_config("sample", [*recipe_sample, *SHORTER["sample"], override, f"output={tmp_path / 'x.mp4'}"])
        with pytest.raises(ValueError, match=rf"sampling was given another {given}=") as refused:
            sample.run(cfg)
        assert "python -m ltx.cli.precompute" in str(refused.value) and str((target / "latent_stats.safetensors").resolve()) in \
            str(refused.value)
        assert not (tmp_path / "x.mp4").exists()
