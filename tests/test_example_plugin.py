"""The worked plugin package ``experiments/plugins/ltx-example-plugin``, installed for real with
``pip install -e`` and selected by name from the command line.

The editable install goes to a throwaway ``--prefix`` (offline: ``--no-index --no-deps
--no-build-isolation``), never into the main environment, whose registries other tests expect to hold
only the built-ins. pip writes there what it writes into a venv: a ``*.dist-info`` with the
``ltx.plugins`` entry point and an ``__editable__*.pth`` whose import hook maps ``ltx_example_plugin`` to
the source tree. ``PYTHONPATH`` alone would find the dist-info but not run the ``.pth`` (only site
directories get that), so the subprocesses start with a ``sitecustomize`` that makes the prefix a site
directory (``site.addsitedir``), as the interpreter does for its own site-packages.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO_ROOT
from training_runs import (
    dit_overrides,
    metric_by_step,
    read_rows,
    subprocess_env,
    train_command,
    vae_overrides,
)

PLUGIN_DIR = REPO_ROOT / "experiments" / "plugins" / "ltx-example-plugin"
THETA = 10000.0
TIMEOUT = 300


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a process that sees ``ltx-example-plugin`` installed with ``pip install -e``."""
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    assert pip.returncode == 0, f"the plugin example is installed with pip, which this environment lacks: {pip.stderr}"
    prefix = tmp_path_factory.mktemp("plugin_prefix")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--disable-pip-version-check", "--prefix", str(prefix), "-e", str(PLUGIN_DIR)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    dist_infos = list(prefix.rglob("ltx_example_plugin-*.dist-info"))
    assert len(dist_infos) == 1, f"pip wrote no single dist-info under {prefix}: {dist_infos}"
    site_dir = dist_infos[0].parent
    assert list(site_dir.glob("__editable__*ltx_example_plugin*.pth")), "not an editable install"
    boot = prefix / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(f"import site\n\nsite.addsitedir({str(site_dir)!r})\n")
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(boot), env.get("PYTHONPATH")]))
    return env


def run_python(env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def run_training(env: dict[str, str], config: str, *overrides: str, expect_success: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(train_command(config, *overrides), env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=TIMEOUT)
    if expect_success:
        assert result.returncode == 0, f"training failed ({result.returncode}):\n{(result.stdout + result.stderr)[-6000:]}"
    return result


def assert_finite_metrics(run_dir: Path, steps: int) -> dict[int, float]:
    losses = metric_by_step(run_dir / "csv" / "metrics.csv", "train/loss")
    assert sorted(losses) == list(range(steps)), losses
    for row in read_rows(run_dir / "csv" / "metrics.csv"):
        for key, value in row.items():
            if key.startswith("train/") and value:
                assert math.isfinite(float(value)), (key, row)
    return losses


def saved_config(run_dir: Path) -> dict:
    """The resolved run config the training stage saved beside its CSV metrics."""
    return yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text())["cfg"]


def test_pip_install_e_makes_the_entry_point_visible(plugin_env):
    code = ("from importlib.metadata import entry_points; import ltx_example_plugin; "
            "print([(e.name, e.value) for e in entry_points(group='ltx.plugins')]); print(ltx_example_plugin.__file__)")
    lines = run_python(plugin_env, code).stdout.splitlines()
    assert lines[0] == "[('example', 'ltx_example_plugin')]"
    assert Path(lines[1]) == PLUGIN_DIR / "ltx_example_plugin" / "__init__.py"  # editable: the source tree


def test_registry_command_lists_both_entries(plugin_env):
    result = subprocess.run([sys.executable, "-m", "ltx.registry"], env=plugin_env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "loaded  example (ltx_example_plugin)" in result.stdout and "FAILED" not in result.stdout
    entries = registry_entries(result.stdout)
    assert entries["rope spacing"]["linear"].startswith("ltx_example_plugin.linear_spacing - ")
    assert entries["loss"]["log_cosh"].startswith("ltx_example_plugin.LogCoshLoss - ")
    assert {"exponential", "inverse_exponential"} <= set(entries["rope spacing"]) and "mse" in entries["loss"]


def registry_entries(listing: str) -> dict[str, dict[str, str]]:
    """``python -m ltx.registry`` output as {registry kind: {entry name: description}}."""
    entries: dict[str, dict[str, str]] = {}
    section: dict[str, str] | None = None
    for line in listing.splitlines():
        if not line.startswith(" ") and line.endswith(")") and " (" in line:
            section = entries.setdefault(line.rsplit(" (", 1)[0], {})
        elif line.startswith("  ") and section is not None and not line.startswith("  (no entries"):
            name, _, description = line.strip().partition(" ")
            section[name] = description.strip()
        elif line.startswith("plugins from"):
            section = None
    return entries


VALUES_SCRIPT = """
import json, torch
from ltx.positional.rope import rope_frequencies
from ltx.registry import LOSSES, ROPE_SPACINGS
torch.manual_seed(0)
prediction, target = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
mask = torch.zeros(2, 1, 4, 1, dtype=torch.bool)
mask[0, :, :3] = True   # sample 0 keeps frames 0-2, sample 1 frame 1 only
mask[1, :, 1] = True
loss = LOSSES.build("log_cosh", scale=0.5)
huge = LOSSES.build("log_cosh")(torch.full((1, 4), 200.0), torch.zeros(1, 4))
out = {
    "frequencies": rope_frequencies("linear", 96, 10000.0).tolist(),
    "dtype": str(rope_frequencies("linear", 96, 10000.0).dtype),
    "single": ROPE_SPACINGS.get("linear")(1, 10000.0).tolist(),
    "prediction": prediction.tolist(), "target": target.tolist(), "mask": mask.tolist(),
    "unmasked": loss(prediction, target).item(), "masked": loss(prediction, target, mask).item(),
    "default_scale": LOSSES.build("log_cosh")(prediction, target).item(), "huge": huge.item(),
}
try:
    ROPE_SPACINGS.get("linear")(0, 10000.0)
except ValueError as error:
    out["count_error"] = str(error)
print(json.dumps(out))
"""


def reference_log_cosh(residual: torch.Tensor, scale: float) -> torch.Tensor:
    return scale * torch.log(torch.cosh(residual.double() / scale))


def test_spacing_and_loss_match_their_documented_formulas(plugin_env):
    out = json.loads(run_python(plugin_env, VALUES_SCRIPT).stdout)
    # linear: linspace(1, theta, count) * pi / 2, count = 96 // 6 = 16 per axis
    count = 96 // 6
    expected = [(1 + k * (THETA - 1) / (count - 1)) * math.pi / 2 for k in range(count)]
    assert out["dtype"] == "torch.float32"
    assert out["frequencies"] == pytest.approx(expected, rel=1e-6)
    assert out["frequencies"][0] == pytest.approx(math.pi / 2) and out["frequencies"][-1] == pytest.approx(THETA * math.pi / 2)
    steps = [b - a for a, b in zip(out["frequencies"], out["frequencies"][1:])]
    assert steps == pytest.approx([steps[0]] * len(steps), rel=1e-4)  # evenly spaced
    assert out["single"] == pytest.approx([math.pi / 2])
    assert "count >= 1" in out["count_error"]

    # log_cosh: scale * log(cosh(r / scale)); mask: per-sample mean over kept positions, then over samples
    residual = torch.tensor(out["prediction"]) - torch.tensor(out["target"])  # (2, 3, 4, 5)
    values = reference_log_cosh(residual, 0.5)
    mask = torch.tensor(out["mask"]).expand_as(values)
    per_sample = [values[i][mask[i]].mean() for i in range(2)]
    assert out["unmasked"] == pytest.approx(values.mean().item(), rel=1e-5)
    assert out["masked"] == pytest.approx(torch.stack(per_sample).mean().item(), rel=1e-5)
    assert abs(out["masked"] - out["unmasked"]) > 1e-3  # the mask changes what is averaged
    assert out["default_scale"] == pytest.approx(reference_log_cosh(residual, 1.0).mean().item(), rel=1e-5)
    assert out["huge"] == pytest.approx(200.0 - math.log(2.0), rel=1e-6)  # linear tail, no overflow


@pytest.mark.slow
def test_dit_trains_with_the_plugin_rope_spacing(plugin_env, demo_dir, tmp_path):
    """`make train-dit ARGS="model.dit.rope_spacing=linear ..."`; the same run with the built-in spacing
    trains different self-attention weights from the same seed, so the spacing reached the model. The
    end-of-run export of the linear-spacing DiT (which diffusers cannot describe) is in our layout."""
    runs = {}
    for spacing in ("linear", "exponential"):
        run_dir = tmp_path / spacing
        run_training(plugin_env, "train_dit", *dit_overrides(
            demo_dir, run_dir, f"model.dit.rope_spacing={spacing}", "trainer.max_steps=2", "data.batches_per_epoch=2",
            "callbacks.checkpoint.every_n_train_steps=2"))
        assert_finite_metrics(run_dir, steps=2)
        assert saved_config(run_dir)["model"]["dit"]["rope_spacing"] == spacing
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert checkpoint["global_step"] == 2
        assert checkpoint["hyper_parameters"]["cfg"]["model"]["dit"]["rope_spacing"] == spacing
        runs[spacing] = checkpoint["state_dict"]
        export = run_dir / "export" / "transformer"
        if spacing == "linear":
            assert json.loads((export / "ltx_dit_config.json").read_text())["rope_spacing"] == "linear"
        else:
            assert (export / "config.json").exists()  # the release's spacing: a diffusers directory
    differing = [name for name, value in runs["linear"].items()
                 if name.startswith("transformer.") and not torch.equal(value, runs["exponential"][name])]
    assert any(".attn1." in name for name in differing), "the RoPE spacing did not change the self-attention"


@pytest.mark.slow
def test_vae_trains_with_the_plugin_reconstruction_loss(plugin_env, tmp_path):
    """`make train-vae ARGS="loss.terms.reconstruction.name=log_cosh +loss.terms.reconstruction.kwargs.scale=0.5"`."""
    run_dir = tmp_path / "vae"
    run_training(plugin_env, "train_vae", *vae_overrides(
        run_dir, "loss.terms.reconstruction.name=log_cosh", "+loss.terms.reconstruction.kwargs.scale=0.5",
        "trainer.max_steps=2", "data.batches_per_epoch=2"))
    assert_finite_metrics(run_dir, steps=2)
    assert metric_by_step(run_dir / "csv" / "metrics.csv", "train/reconstruction")  # the term was logged
    terms = saved_config(run_dir)["loss"]["terms"]
    assert terms["reconstruction"] == {"name": "log_cosh", "weight": 1.0, "kwargs": {"scale": 0.5}}
    # the checkpoint's config rebuilds the plugin's loss, as the training stage did
    code = ("import json, sys, torch; from ltx.losses import WeightedLossTerms; "
            "cfg = torch.load(sys.argv[1], map_location='cpu', weights_only=True)['hyper_parameters']['cfg']; "
            "loss = WeightedLossTerms(cfg['loss']['terms']).terms['reconstruction']; "
            "print(json.dumps([type(loss).__module__, type(loss).__name__, loss.scale]))")
    result = subprocess.run([sys.executable, "-c", code, str(run_dir / "checkpoints" / "last.ckpt")], env=plugin_env,
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["ltx_example_plugin", "LogCoshLoss", 0.5]


def test_unknown_names_still_fail_listing_the_plugin_entries(plugin_env, tmp_path):
    result = run_training(plugin_env, "train_vae", *vae_overrides(tmp_path, "loss.terms.reconstruction.name=no_such_loss",
                                                                  "trainer.max_steps=1"), expect_success=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "unknown loss 'no_such_loss'. Valid names:" in output
    valid = output.split("unknown loss 'no_such_loss'. Valid names: ", 1)[1].split(".", 1)[0].split(", ")
    assert {"log_cosh", "mse", "l1"} <= set(valid)
    code = ("from ltx.registry import ROPE_SPACINGS\ntry:\n    ROPE_SPACINGS.get('no_such_spacing')\n"
            "except LookupError as error:\n    print(error)")
    message = run_python(plugin_env, code).stdout
    assert message.startswith("unknown rope spacing 'no_such_spacing'. Valid names: exponential, inverse_exponential, linear.")
