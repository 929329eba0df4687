"""Quick mode of every ablation (``python -m experiments --quick``): each trains its variants for a
few steps on the shared demo workspace and writes its table, plot and results file."""

from __future__ import annotations

import json

import pytest

from experiments.__main__ import main
from experiments.ablations import ABLATIONS, Settings


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
        assert record["steps"] > 0


def test_unknown_ablation_names_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["rope_spacings"])
    assert "valid: rope_spacing, positions" in capsys.readouterr().err
