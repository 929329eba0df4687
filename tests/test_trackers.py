"""Experiment trackers: W&B runs offline unless credentials are configured, logs scalars and preview images."""

from __future__ import annotations

import pytest
from test_vae_training import vae_run_config

from ltx.cli.train import run_training
from ltx.training.loggers import wandb_credentials_configured, wandb_logger


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))


def test_credentials_come_from_the_environment_or_netrc(no_credentials, monkeypatch, tmp_path):
    assert not wandb_credentials_configured()
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert wandb_credentials_configured()
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_credentials_configured()


def test_wandb_logger_runs_offline_without_credentials(no_credentials, demo_dir, tmp_path):
    """A VAE run with logger=wandb: offline files under run_dir/wandb, with the scalars and the preview images."""
    cfg = vae_run_config(demo_dir, tmp_path, "logger=wandb", "trainer.max_steps=2", "loss.gan=null")
    trainer = run_training(cfg)
    logger = next(logger for logger in trainer.loggers if type(logger).__name__ == "WandbLogger")
    assert logger.experiment.settings.mode in ("offline", "dryrun")  # wandb calls its offline mode "dryrun"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert list(runs[0].glob("files/media/images/val/reconstruction*.png"))  # the preview grid
    assert (tmp_path / "csv" / "metrics.csv").exists()
    assert wandb_logger("p", "n", str(tmp_path / "forced"), offline=False)._offline is False  # forced online
