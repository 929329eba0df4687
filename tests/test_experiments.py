"""Quick mode of every ablation (``python -m experiments --quick``): each trains its variants for a
few steps on the shared workspace (make demo's data and recipes, shrunk) and writes its table, seed-paired
comparisons, verdict, plot and results file; and the README blocks regenerated from results files."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from experiments.__main__ import main
from experiments.ablations import ABLATIONS, Column, Result
from experiments.evaluation import RECONSTRUCTION_METRICS, sharpness, zero_prediction_loss
from experiments.ledger import MEASUREMENTS_VERSION, Ledger
from experiments.report import (
    RESULTS_END,
    RESULTS_START,
    SUMMARY_END,
    SUMMARY_START,
    commit,
    update_readme,
    update_summary,
    write,
)
from experiments.runs import RunSpec, _seconds_before, checkpoint_steps, metric_curve, train
from experiments.trained import Settings, cached_measurement, dit_validation_loss
from experiments.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, compare
from experiments.workspace import Workspace
from ltx.data.latents import LatentSample
from ltx.data.shards import write_shard
from ltx.training.checkpoints import latest_checkpoint


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments")
    return out, main(["--quick", "--out", str(out)])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ABLATIONS))
def test_quick_mode_writes_the_table_comparisons_verdict_and_plot(quick_results, name):
    out, written = quick_results
    directory = out / name
    assert written[name] == directory / "results.md"
    record = json.loads((directory / "results.json").read_text())
    settings = Settings.load(name, quick=True)
    if name != "decoder_denoising":  # its rows are the two ways of decoding
        assert set(record["per_seed"]) >= set(settings.variants)
    assert record["outcome"] in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
    assert record["outcome"] == INCONCLUSIVE  # one seed in quick mode: never a direction
    assert any(comparison["primary"] for comparison in record["comparisons"])
    for comparison in record["comparisons"]:
        assert comparison["seeds"] == settings.seeds and len(comparison["differences"]) == len(settings.seeds)
    for row in record["rows"].values():
        for column in record["columns"]:
            value = row[column["key"]]
            if value is None:  # LPIPS without local backbone weights, or a metric a variant does not have
                continue
            assert value["mean"] == value["mean"] and abs(value["mean"]) < 1e6  # finite
    baseline = record["baseline"]["rows"]
    assert baseline["vae_psnr"]["target"] == 25.0 and baseline["vae_ssim"]["target"] == 0.8
    assert ("dit_colour" in baseline) == (name in ("rope_spacing", "positions", "decoder_denoising"))
    assert record["commit"] and record["hardware"] and record["date"]
    if name in ("vae_gan", "dwt_loss"):  # sharpness is judged by its distance from the original's, not its size
        sharpness = [comparison for comparison in record["comparisons"] if "sharpness" in comparison["metric"]]
        assert [(comparison["metric"], comparison["better"]) for comparison in sharpness] == [("sharpness_gap", "lower")]
        for row in record["rows"].values():
            assert row["sharpness_gap"]["mean"] >= 0
        stored = list((out / "workspace" / "runs").glob("vae-*/measurements/reconstruction*.json"))
        assert stored and all(set(RECONSTRUCTION_METRICS) <= set(json.loads(path.read_text())["values"])
                              for path in stored)
    table = (directory / "results.md").read_text()
    assert "Seed-paired comparisons" in table and f"Verdict: **{record['outcome']}**" in table
    assert all(variant in table for variant in record["per_seed"])
    png = (directory / f"{name}.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    for figure in record["figures"]:
        assert (directory / figure).read_bytes().startswith(b"\x89PNG")


def test_runs_are_cached_by_configuration_and_gan_variants_branch_from_the_baseline(quick_results):
    out, _ = quick_results
    runs = {run.name: json.loads((run / "done.json").read_text()) for run in (out / "workspace" / "runs").iterdir()}
    # one baseline VAE (vae_gan's no_gan, vae_logvar's uniform, dwt_loss's with_dwt, decoder_denoising's, the
    # DiTs' latents), per_channel, without_dwt, and the rgan and gan branches
    vae_runs = {name: record for name, record in runs.items() if name.startswith("vae-")}
    assert len(vae_runs) == 5
    # one baseline DiT (rope_spacing's exponential, positions' relative_fractional), inverse_exponential,
    # absolute, fractional
    assert len([name for name in runs if name.startswith("dit-")]) == 4
    for record in runs.values():
        assert record["steps"] > 0 and record["seconds"] > 0
    [baseline] = [name for name, record in vae_runs.items() if not any(
        key in override for override in record["overrides"] for key in ("gan", "wavelet", "logvar"))]
    branches = {name: record for name, record in vae_runs.items() if any("loss.gan=" in o for o in record["overrides"])}
    assert len(branches) == 2
    for name, record in branches.items():
        [resume] = [override for override in record["overrides"] if override.startswith("resume=")]
        assert f"{baseline}/checkpoints/" in resume and "step=2.ckpt" in resume
        assert "loss.gan.start_step=2" in record["overrides"]
        # the branch continues the baseline's step 2 with a discriminator of its own
        assert metric_curve(out / "workspace" / "runs" / name, "train/gan_discriminator")[0][0] == 2


def test_dit_runs_are_validated_at_unseen_sizes_as_at_the_end_of_training(quick_results):
    out, _ = quick_results
    workspace = Workspace(out / "workspace", quick=True)
    for name in ("near_unseen", "longer"):
        assert sorted(workspace.unseen_world_latents(name).glob("*.tar")), f"no {name} latents were written"
    record = json.loads((out / "positions" / "results.json").read_text())
    for variant in Settings.load("positions", quick=True).variants:
        for metric in ("val_loss_near_unseen", "val_loss_longer"):
            assert set(record["per_seed"][variant][metric]) == {"0"}
    assert any("zero velocity" in note for note in record["notes"])
    # the measure on a finished run's checkpoint is the one taken in the training process
    run = next(run for run in sorted(workspace.runs.iterdir()) if run.name.startswith("dit-"))
    stored = json.loads((run / "done.json").read_text())["after"]["val_loss_unseen_size"]
    assert dit_validation_loss(run, workspace.unseen_latents)["val_loss"] == pytest.approx(stored, rel=1e-5)


def test_the_zero_prediction_loss_is_one_plus_the_latents_mean_square(tmp_path):
    def sample(key: str, value: float) -> LatentSample:
        return LatentSample(key, torch.full((4, 2, 1, 1), value), torch.zeros(3, 8), torch.ones(3, dtype=torch.bool),
                            key, {"fps": 24.0})

    write_shard(tmp_path / "latents-000000.tar", [sample("a", 1.0), sample("b", 3.0)])
    assert zero_prediction_loss(tmp_path) == pytest.approx(1.0 + (1.0 + 9.0) / 2)
    with pytest.raises(FileNotFoundError, match="no latent samples"):
        zero_prediction_loss(tmp_path / "empty")


def test_an_interrupted_run_continues_from_its_own_latest_checkpoint(quick_results, tmp_path):
    out, _ = quick_results
    source = out / "workspace" / "runs"
    records = {run.name: json.loads((run / "done.json").read_text()) for run in sorted(source.iterdir())
               if run.name.startswith("vae-")}
    name, record = next((name, record) for name, record in records.items()
                        if any("loss.gan=" in override for override in record["overrides"]))
    runs = tmp_path / "runs"
    shutil.copytree(source / name, runs / name)
    (runs / name / "done.json").unlink()  # as if stopped after its last checkpoint, before the record
    # the interrupted process: started 100 s before writing its last checkpoint, after 50 s of earlier ones
    checkpoint = latest_checkpoint(runs / name)
    (runs / name / "segment.json").write_text(json.dumps({"started": checkpoint.stat().st_mtime - 100.0,
                                                          "seconds_before": 50.0}))
    spec = RunSpec("train_vae", tuple(record["overrides"]))
    assert spec.run_dir(runs) == runs / name
    continued = train(spec, runs)
    # its own checkpoint, not the baseline's checkpoint that its spec branches from
    assert continued["resumed_from"] == str(checkpoint)
    # its training time counts the interrupted processes' time up to that checkpoint
    assert 0 < continued["seconds_this_process"]
    assert continued["seconds"] == pytest.approx(150.0 + continued["seconds_this_process"])
    assert continued["steps"] == record["steps"] and continued["overrides"] == record["overrides"]
    assert json.loads((runs / name / "done.json").read_text()) == continued


def test_a_run_begun_before_segments_were_recorded_counts_from_its_first_log(tmp_path):
    import os

    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "hparams.yaml").write_text("{}")
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"")
    os.utime(tmp_path / "csv" / "hparams.yaml", (1000.0, 1000.0))
    os.utime(checkpoint, (1400.0, 1400.0))
    assert _seconds_before(tmp_path, checkpoint) == pytest.approx(400.0)
    branch = tmp_path / "branch"  # a branch's first process logs as a resume of its starting point
    (branch / "csv" / "resumed-step4000").mkdir(parents=True)
    (branch / "csv" / "resumed-step4000" / "hparams.yaml").write_text("{}")
    os.utime(branch / "csv" / "resumed-step4000" / "hparams.yaml", (1100.0, 1100.0))
    assert _seconds_before(branch, checkpoint) == pytest.approx(300.0)
    # once resumed without a record, the earlier processes' time cannot be known: not guessed
    (tmp_path / "csv" / "resumed-step1000").mkdir()
    (tmp_path / "csv" / "resumed-step1000" / "hparams.yaml").write_text("{}")
    assert _seconds_before(tmp_path, checkpoint) is None


def test_a_resumed_log_supersedes_what_the_interrupted_one_logged_past_the_checkpoint(tmp_path):
    def log(directory, rows):
        directory.mkdir(parents=True)
        (directory / "metrics.csv").write_text("step,train/loss\n" + "".join(f"{s},{v}\n" for s, v in rows))

    log(tmp_path / "csv", [(0, 1.0), (500, 0.9), (1000, 0.8), (1200, 0.7)])  # interrupted at 1,200
    log(tmp_path / "csv" / "resumed-step1000", [(1000, 0.6), (1500, 0.5)])  # from the 1,000-step checkpoint
    log(tmp_path / "csv" / "resumed-step500", [(500, 0.95), (900, 0.85)])  # an earlier resume, logged first
    assert metric_curve(tmp_path, "train/loss") == [(0, 1.0), (500, 0.95), (900, 0.85), (1000, 0.6), (1500, 0.5)]


def test_the_recorded_commit_is_the_checkout_a_run_started_from(tmp_path):
    """What one ablation writes must not mark the next one's provenance dirty (make ablations runs six)."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    (tmp_path / "results.md").write_text("old\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "results.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    assert commit(tmp_path) == head
    (tmp_path / "results.md").write_text("written by the first ablation\n")
    assert commit(tmp_path) == head
    assert commit.__wrapped__(tmp_path) == head + "+dirty"
    assert commit(tmp_path / "missing") == "unknown"


def test_a_cached_measurement_missing_a_required_metric_is_redone(tmp_path):
    calls = []

    def measure(**values):
        calls.append(values)
        return values

    assert cached_measurement(tmp_path, "reconstruction", lambda: measure(psnr=25.0)) == {"psnr": 25.0}
    assert cached_measurement(tmp_path, "reconstruction", lambda: measure(psnr=0.0), required=("psnr",)) == {"psnr": 25.0}
    assert len(calls) == 1
    redone = cached_measurement(tmp_path, "reconstruction", lambda: measure(psnr=25.0, sharpness_gap=0.3),
                                required=("psnr", "sharpness_gap"))
    assert redone == {"psnr": 25.0, "sharpness_gap": 0.3} and len(calls) == 2
    assert cached_measurement(tmp_path, "reconstruction", lambda: measure(), required=("sharpness_gap",)) == redone


def test_measurements_go_to_the_ledger_which_a_clone_reads_without_the_run(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    run_dir = tmp_path / "runs" / "vae-0123456789ab"
    calls = []

    def measure(**values):
        calls.append(values)
        return values

    assert cached_measurement(run_dir, "latent_pca", lambda: measure(psnr=25.0), ledger=ledger) == {"psnr": 25.0}
    stored = json.loads(ledger.path(run_dir).read_text())["measurements"]["latent_pca"]
    assert stored["values"] == {"psnr": 25.0} and stored["code"] == commit() and stored["measured"].endswith("UTC")
    shutil.rmtree(run_dir)  # a clone: the ledger without the run directory
    assert cached_measurement(run_dir, "latent_pca", lambda: measure(psnr=0.0), ledger=ledger) == {"psnr": 25.0}
    assert len(calls) == 1
    # a metric added since, or another measurement version, is measured again
    assert cached_measurement(run_dir, "latent_pca", lambda: measure(psnr=25.0, ssim=0.8), required=("ssim",),
                              ledger=ledger) == {"psnr": 25.0, "ssim": 0.8}
    entry = json.loads(ledger.path(run_dir).read_text())
    entry["measurements"]["latent_pca"]["version"] = MEASUREMENTS_VERSION - 1
    ledger.path(run_dir).write_text(json.dumps(entry))
    assert ledger.measurement(run_dir, "latent_pca") is None
    # a measurement a run directory held before the ledger existed is carried into it
    older = tmp_path / "runs" / "vae-ba9876543210"
    cached_measurement(older, "reconstruction", lambda: measure(psnr=26.0))
    assert cached_measurement(older, "reconstruction", lambda: measure(psnr=0.0), ledger=ledger) == {"psnr": 26.0}
    assert ledger.measurement(older, "reconstruction") == {"psnr": 26.0} and len(calls) == 3
    (older / "checkpoints").mkdir()
    (older / "checkpoints" / "step=1000.ckpt").touch()
    ledger.record_training(older, {"steps": 6000, "seconds": 2777.0})
    assert ledger.training(older) == {"steps": 6000, "seconds": 2777.0}
    assert ledger.checkpoints(older) == {1000: str(older / "checkpoints" / "step=1000.ckpt")}
    assert ledger.measurement(older, "reconstruction") == {"psnr": 26.0}
    ledger.path(older).write_text("{")
    with pytest.raises(ValueError, match="not valid JSON.*git checkout"):
        ledger.training(older)


@pytest.mark.slow
def test_a_clone_with_the_ledger_regenerates_every_result_without_training(quick_results, tmp_path, monkeypatch):
    out, _ = quick_results
    ledger = Ledger(out / "ledger")
    runs = out / "workspace" / "runs"
    for run in runs.iterdir():  # every run's training record and checkpoints are in the ledger
        assert ledger.training(run) == json.loads((run / "done.json").read_text())
        assert ledger.checkpoints(run) == {step: str(path) for step, path in checkpoint_steps(run).items()}
    before = {name: json.loads((out / name / "results.json").read_text()) for name in ABLATIONS}
    figure = (out / "vae_gan" / "side_by_side.png").read_bytes()
    runs.rename(tmp_path / "runs")  # a clone: the ledger and the generated world, no run directories

    def no_training(cfg):
        raise AssertionError("a run the ledger holds was trained again")

    monkeypatch.setattr("experiments.runs.run_training", no_training)
    try:
        main(["--quick", "--out", str(out)])
        assert not runs.exists()
    finally:
        shutil.rmtree(runs, ignore_errors=True)
        (tmp_path / "runs").rename(runs)
    for name in ABLATIONS:
        after = json.loads((out / name / "results.json").read_text())
        for key in ("per_seed", "comparisons", "baseline", "curves", "notes"):
            assert after[key] == before[name][key], (name, key)
        assert after["settings"]["training_minutes"] == before[name]["settings"]["training_minutes"] > 0
    assert (out / "vae_gan" / "side_by_side.png").read_bytes() == figure


def test_sharpness_tells_blur_from_artefacts():
    generator = torch.Generator().manual_seed(0)
    original = torch.rand(3, 4, 32, 32, generator=generator) * 2 - 1
    blurred = torch.nn.functional.avg_pool3d(original[None], (1, 3, 3), stride=1, padding=(0, 1, 1),
                                             count_include_pad=False)[0]
    noisy = (original + 0.5 * torch.randn(original.shape, generator=generator)).clamp(-1, 1)
    assert sharpness(original, original) == pytest.approx(1.0)
    assert sharpness(blurred, original) < 0.8 and sharpness(noisy, original) > 1.05


def test_a_label_holding_a_pipe_stays_one_table_cell(tmp_path):
    per_seed = {"a|b": {"gap": {0: 0.1}}, "c": {"gap": {0: 0.2}}}
    result = Result("toy", "Lower is better.", [Column("gap", "mean |ratio - 1|", "lower")], per_seed,
                    [compare("gap", "a|b", "c", "lower", per_seed)], curves={"gap": {"a|b": [(0, 0.3), (1, 0.1)]}})
    table = write(result, tmp_path, "python -m experiments toy", 1.0)["markdown"].read_text().splitlines()
    header = table.index("| variant | mean \\|ratio - 1\\| |")
    for line in table[header:header + 4]:  # header, rule, two variants: two cells each
        assert line.replace("\\|", "").count("|") == 3, line
    [comparison] = [line for line in table if line.startswith("| primary |")]
    assert "a\\|b vs c" in comparison and comparison.replace("\\|", "").count("|") == 6, comparison


def test_unknown_ablation_names_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["rope_spacings"])
    assert "valid: rope_spacing, positions" in capsys.readouterr().err


def test_readme_blocks_and_the_summary_are_regenerated_from_the_results_files(tmp_path):
    per_seed = {"a": {"loss": {0: 0.5, 1: 0.4, 2: 0.45}}, "b": {"loss": {0: 0.7, 1: 0.6, 2: 0.8}}}
    result = Result("toy", "Lower is better.", [Column("loss", "loss", "lower")], per_seed,
                    [compare("loss", "a", "b", "lower", per_seed)], curves={"loss": {"a": [(0, 1.0), (1, 0.5)]}},
                    baseline={"rows": {"vae_psnr": {"label": "VAE PSNR", "mean": 25.5, "min": 25.2, "max": 25.9,
                                                    "target": 25.0, "met": True}}, "all_met": True},
                    settings={"training_minutes": 2.5})
    directory = tmp_path / "toy"
    paths = write(result, directory, "python -m experiments toy", 60.0)
    readme = directory / "README.md"
    readme.write_text(f"# toy\n\nintro\n\n{RESULTS_START}\nold\n{RESULTS_END}\n\nafter\n")
    assert update_readme(readme, paths["markdown"], "toy")
    text = readme.read_text()
    assert "old" not in text and "intro" in text and "after" in text and "![toy](toy.png)" in text
    assert "| a | 0.4500 ± 0.0500 (0.4000 to 0.5000) |" in text and "| b | 0.7000 ± 0.1000 (0.6000 to 0.8000) |" in text
    assert "Verdict: **reproduced**" in text and "| -0.2, -0.2, -0.35 | 3 of 3 | reproduced |" in text
    assert "The baseline meets the demo's targets" in text
    summary = tmp_path / "README.md"
    summary.write_text(f"x\n{SUMMARY_START}\n{SUMMARY_END}\ny\n")
    assert update_summary(summary, [directory, tmp_path / "missing"])
    line = next(line for line in summary.read_text().splitlines() if line.startswith("| [toy]"))
    record = json.loads(paths["json"].read_text())
    assert "**reproduced**" in line and "-0.2, -0.2, -0.35 (reproduced)" in line and "| yes | 2.5 min |" in line
    assert record["commit"] in line and record["date"] in line and record["hardware"] in summary.read_text()
