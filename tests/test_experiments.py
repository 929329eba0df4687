"""Quick mode of every ablation (``python -m experiments --quick``): each trains its variants for a
few steps on the shared demo workspace and writes its table, plot and results file."""

from __future__ import annotations

import json

import pytest

from experiments.__main__ import main
from experiments.ablations import ABLATIONS, Result, Settings
from experiments.report import (
    RESULTS_END,
    RESULTS_START,
    SUMMARY_END,
    SUMMARY_START,
    update_readme,
    update_summary,
    write,
)


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments")
    return out, main(["--quick", "--out", str(out)])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ABLATIONS))
def test_quick_mode_writes_the_table_plot_and_results(quick_results, name):
    out, written = quick_results
    directory = out / name
    assert written[name] == directory / "results.md"
    record = json.loads((directory / "results.json").read_text())
    settings = Settings.load(name, quick=True)
    assert set(record["rows"]) >= set(settings.variants) or name == "decoder_denoising"
    assert isinstance(record["reproduced"], bool) and record["verdict"]
    for row in record["rows"].values():
        for column in record["columns"]:
            value = row[column]
            if value is None:  # only LPIPS without local backbone weights
                assert column == "lpips"
                continue
            number = value["mean"] if isinstance(value, dict) else value
            assert number == number and abs(number) < 1e6  # finite
    table = (directory / "results.md").read_text()
    assert all(variant in table for variant in record["rows"]) and "Paper's direction reproduced" in table
    png = (directory / f"{name}.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_runs_are_cached_by_configuration(quick_results):
    out, _ = quick_results
    runs = list((out / "workspace" / "runs").iterdir())
    # the shared VAE is also decoder_denoising's first variant, and the rGAN / uniform / with-DWT VAE
    # runs are one configuration: 1 shared + 1 control + (rgan, gan, no_gan, per_channel, without_dwt)
    vae_runs = [run for run in runs if run.name.startswith("vae-")]
    assert len(vae_runs) == 7
    dit_runs = [run for run in runs if run.name.startswith("dit-")]
    assert len(dit_runs) == 2 + 3  # rope spacing x 1 seed + positions x 1 seed (quick)
    for run in runs:
        record = json.loads((run / "done.json").read_text())
        assert record["steps"] > 0 and record["seconds"] > 0


def test_unknown_ablation_names_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["rope_spacings"])
    assert "valid: rope_spacing, positions" in capsys.readouterr().err


def test_readme_blocks_are_replaced_with_the_measured_table(tmp_path):
    result = Result("toy", "Lower is better.", ["loss"], {"a": {"loss": 0.5}, "b": {"loss": {"mean": 0.7, "min": 0.6,
                                                                                          "max": 0.8}}},
                    reproduced=True, verdict="a beats b", curves={"loss": {"a": [(0, 1.0), (1, 0.5)]}},
                    settings={"training_minutes": 2.5})
    directory = tmp_path / "toy"
    write(result, directory, "python -m experiments toy", 60.0)
    readme = directory / "README.md"
    readme.write_text(f"# toy\n\nintro\n\n{RESULTS_START}\nold\n{RESULTS_END}\n\nafter\n")
    assert update_readme(readme, result, "python -m experiments toy", 60.0)
    text = readme.read_text()
    assert "old" not in text and "intro" in text and "after" in text
    assert "| a | 0.5000 |" in text and "| b | 0.7000 (0.6000-0.8000) |" in text and "![toy](toy.png)" in text
    summary = tmp_path / "README.md"
    summary.write_text(f"x\n{SUMMARY_START}\n{SUMMARY_END}\ny\n")
    assert update_summary(summary, [directory, tmp_path / "missing"])
    assert "| [toy](toy/README.md) | yes | a beats b | 2.5 min |" in summary.read_text()
