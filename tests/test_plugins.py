"""Third-party plugins through the ``ltx.plugins`` entry-point group, installed for real as a
distribution on ``sys.path`` (a ``*.dist-info`` with ``entry_points.txt``, what pip writes), then
selected by name from Hydra overrides, in-process and through the training CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, compose_config

from ltx import registry as registry_module
from ltx.losses import WeightedLossTerms
from ltx.registry import LOSSES, TRAINING_STAGES

PLUGIN_CODE = '''
"""A third-party plugin: a loss and a tiny training stage, registered on import."""
import json
from pathlib import Path

import lightning as L
import torch
from torch import nn

from ltx.losses import WeightedLossTerms
from ltx.registry import LOSSES, TRAINING_STAGES


@LOSSES.register("charbonnier")
class CharbonnierLoss(nn.Module):
    """Charbonnier (smooth L1) loss."""

    def __init__(self, epsilon: float = 1e-3):
        super().__init__()
        self.epsilon = epsilon

    def forward(self, prediction, target, mask=None):
        return torch.sqrt((prediction - target) ** 2 + self.epsilon**2).mean()


@TRAINING_STAGES.register("toy_autoencoder")
class ToyAutoencoder(L.LightningModule):
    """A 1x1x1 conv trained to reproduce its input, with the configured loss terms."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.net = nn.Conv3d(3, 3, 1)
        self.loss = WeightedLossTerms({"reconstruction": cfg.loss.terms.reconstruction})
        self.seen = []

    def training_step(self, batch, batch_index):
        video = batch["video"]  # (B, 3, F, H, W)
        total, _ = self.loss({"prediction": (self.net(video), video)})
        self.seen.append({"shape": list(video.shape), "loss": total.item()})
        self.log("train/loss", total)
        return total

    def on_train_end(self):
        report = {"losses": {n: type(m).__name__ for n, m in self.loss.terms.items()}, "steps": self.seen}
        Path(self.cfg.run_dir, "toy_report.json").write_text(json.dumps(report))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """A directory holding an installed distribution ``ltx-example-plugin`` with one entry point."""
    site = tmp_path_factory.mktemp("plugin_site")
    (site / "ltx_example_plugin.py").write_text(PLUGIN_CODE)
    dist_info = site / "ltx_example_plugin-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ltx-example-plugin\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text("[ltx.plugins]\nexample = ltx_example_plugin\n")
    return site


@pytest.fixture
def installed_plugin(plugin_site, monkeypatch):
    """The plugin on sys.path for this test only; registries and plugin state restored afterwards."""
    monkeypatch.syspath_prepend(str(plugin_site))
    for registry in registry_module.registries().values():
        monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    monkeypatch.setattr(registry_module, "_plugin_report", None)
    yield plugin_site
    sys.modules.pop("ltx_example_plugin", None)


def subprocess_env(plugin_site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_site), env.get("PYTHONPATH", "")])
    return env


def test_plugin_entries_appear_on_first_lookup(installed_plugin):
    assert "ltx_example_plugin" not in sys.modules
    assert "charbonnier" in LOSSES.names()
    assert "toy_autoencoder" in TRAINING_STAGES
    report = registry_module.load_plugins()
    assert report.loaded == ["example (ltx_example_plugin)"] and not report.failed


def test_hydra_override_selects_the_plugin_loss(installed_plugin):
    cfg = compose_config("train_vae", ["loss.terms.reconstruction.name=charbonnier",
                                       "+loss.terms.reconstruction.kwargs.epsilon=0.5"])
    terms = WeightedLossTerms(cfg.loss.terms)
    loss = terms.terms["reconstruction"]
    assert type(loss).__name__ == "CharbonnierLoss" and loss.epsilon == 0.5
    zeros = torch.zeros(1, 16, 1, 1, 1)
    clip = torch.zeros(1, 3, 9, 32, 32)
    total, values = terms({"prediction": (clip, clip), "posterior": (zeros, zeros)})
    assert values["reconstruction"].item() == pytest.approx(0.5)


def test_broken_plugin_is_reported_without_breaking_builtins(tmp_path, monkeypatch):
    dist_info = tmp_path / "broken_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[ltx.plugins]\nbroken = module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "_plugin_report", None)
    assert "mse" in LOSSES.names()
    with pytest.raises(LookupError, match=r"Plugins that failed to load: broken \(module_that_does_not_exist\): ModuleNotFoundError"):
        LOSSES.get("charbonnier")


def test_registry_command_lists_plugin_entries(plugin_site):
    result = subprocess.run([sys.executable, "-m", "ltx.registry"], env=subprocess_env(plugin_site),
                            capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert "charbonnier" in result.stdout and "ltx_example_plugin.CharbonnierLoss" in result.stdout
    assert "toy_autoencoder" in result.stdout
    assert "loaded  example (ltx_example_plugin)" in result.stdout
    for kind in registry_module.registries():
        assert f"{kind} (" in result.stdout


def test_training_cli_runs_a_plugin_stage_with_a_plugin_loss(plugin_site, demo_dir, tmp_path):
    """`make train-vae ARGS=...` path: Hydra overrides pick a third-party stage and loss by name."""
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "ltx.cli.train", "--config-name", "train_vae", "experiment=smoke",
        "stage=toy_autoencoder", "loss.terms.reconstruction.name=charbonnier", "callbacks.ema=null",
        f"data.train_shards={demo_dir / 'shards'}", f"run_dir={run_dir}", "trainer.max_steps=3",
        "data.batches_per_epoch=3",
    ]
    result = subprocess.run(command, env=subprocess_env(plugin_site), capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads((run_dir / "toy_report.json").read_text())
    assert report["losses"] == {"reconstruction": "CharbonnierLoss"}
    assert len(report["steps"]) == 3
    for step in report["steps"]:
        batch, channels, frames, height, width = step["shape"]
        assert (batch, channels) == (2, 3) and (frames - 1) % 8 == 0 and height % 32 == 0 and width % 32 == 0
    assert (run_dir / "csv" / "metrics.csv").exists()


def test_unknown_stage_fails_listing_valid_names(demo_dir, tmp_path):
    command = [sys.executable, "-m", "ltx.cli.train", "--config-name", "train_vae", "experiment=smoke",
               "stage=no_such_stage", f"data.train_shards={demo_dir / 'shards'}", f"run_dir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode != 0
    assert "unknown training stage 'no_such_stage'. Valid names:" in result.stderr
