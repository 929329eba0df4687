"""Training runs of the ablations and what is measured on them, cached: ``Settings`` (an ablation's
config.yaml), the VAE and DiT runs of a variant and seed (``experiments.runs.train``: a finished run is not
trained again, so ablations that share a baseline train it once) and measurements stored beside a run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments.ledger import MEASUREMENTS_VERSION, Ledger
from experiments.runs import RunSpec, checkpoint_steps, metric_curve, train
from experiments.workspace import Workspace, prepare_dit_inputs
from ltx.cli.sample import load_dit_module
from ltx.training.adherence import PromptAdherenceCallback, sample_videos, score_videos

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Settings:
    """``experiments/<name>/config.yaml``: variants (name -> overrides; the first is the baseline, with no
    overrides) and seeds per mode (``full`` / ``quick``), and the ablation's own keys."""

    name: str
    variants: dict[str, list[str]]
    seeds: list[int]
    extra: dict[str, Any]
    runs: list[Path] = field(default_factory=list, compare=False)  # the run directories used, filled while running

    @classmethod
    def load(cls, name: str, quick: bool) -> Settings:
        raw = OmegaConf.to_container(OmegaConf.load(ROOT / name / "config.yaml"), resolve=True)
        mode = raw.pop("quick" if quick else "full")
        raw.pop("full" if quick else "quick", None)
        variants = {key: list(value or []) for key, value in raw.pop("variants", {}).items()}
        seeds = list(mode.pop("seeds", [0]))
        if not seeds:
            raise ValueError(f"experiments/{name}/config.yaml: give at least one seed")
        return cls(name, variants, seeds, {**raw, **mode})


def cached_measurement(run_dir: Path, name: str, measure: Callable[[], dict[str, Any]],
                       required: Iterable[str] = (), ledger: Ledger | None = None) -> dict[str, Any]:
    """``measure()`` stored in the ``ledger`` (when given) and in ``run_dir/measurements/<name>.json``, and
    read back from either on later calls (the ledger first: a clone has it without the run directory). A
    measurement is redone when ``MEASUREMENTS_VERSION`` changes, or when the stored values lack one of the
    ``required`` keys (a metric added since it was measured)."""
    required = tuple(required)
    if ledger is not None and (values := ledger.measurement(run_dir, name, required)) is not None:
        return values
    path = run_dir / "measurements" / f"{name}.json"
    if path.exists():
        record = json.loads(path.read_text())
        if record.get("version") == MEASUREMENTS_VERSION and set(required) <= set(record["values"]):
            if ledger is not None:
                ledger.record_measurement(run_dir, name, record["values"])
            return record["values"]
    values = measure()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": MEASUREMENTS_VERSION, "values": values}, indent=1))
    if ledger is not None:
        ledger.record_measurement(run_dir, name, values)
    return values


def trained(workspace: Workspace, settings: Settings, spec: RunSpec,
            after: Callable[[L.Trainer], dict[str, Any]] | None = None) -> Path:
    """``spec``'s run directory, trained (``experiments.runs.train``: skipped when finished), with its record
    and its checkpoints' names in the workspace's ledger."""
    record = train(spec, workspace.runs, after)
    run_dir = spec.run_dir(workspace.runs)
    workspace.ledger.record_training(run_dir, record)
    settings.runs.append(run_dir)
    return run_dir


def measured(workspace: Workspace, settings: Settings, run_dir: Path, name: str,
             measure: Callable[[Path], dict[str, Any]], train: Callable[[], Path],
             required: Iterable[str] = ()) -> dict[str, Any]:
    """``measure(run_dir)`` of a run, from the ledger (or the run directory) where stored, else measured
    after ``train()`` (which trains the run where it is not and returns its directory): a run whose
    measurements the ledger holds is not trained."""
    settings.runs.append(run_dir)
    return cached_measurement(run_dir, name, lambda: measure(train()), required, workspace.ledger)


def training_record(workspace: Workspace, settings: Settings, run_dir: Path, train: Callable[[], Path]) -> dict[str, Any]:
    """A run's training record (``experiments.runs.train``'s), from the ledger, else after ``train()``."""
    settings.runs.append(run_dir)
    if (record := workspace.ledger.training(run_dir)) is None:
        train()
        record = workspace.ledger.training(run_dir)
    return record


def logged_curve(workspace: Workspace, settings: Settings, run_dir: Path, key: str,
                 train: Callable[[], Path]) -> list[tuple[int, float]]:
    """``(step, value)`` of ``key`` in the run's logs (``experiments.runs.metric_curve``), kept in the ledger."""
    values = measured(workspace, settings, run_dir, f"curve-{key}", lambda run: {"curve": metric_curve(run, key)}, train)
    return [(int(step), float(value)) for step, value in values["curve"]]


def is_branch(settings: Settings, variant: str) -> bool:
    return settings.extra.get("branch_from_step") is not None and bool(settings.variants[variant])


def vae_spec(workspace: Workspace, settings: Settings, variant: str, seed: int) -> RunSpec:
    """The variant's run of ``seed``: the baseline VAE with the variant's overrides. With
    ``branch_from_step`` in the settings, a variant with overrides is a branch (``is_branch``): it resumes the
    same seed's baseline from its checkpoint at that step (the two share every step before it, so their
    paired difference is the variant's alone; the checkpoint's name from the ledger, else from the baseline,
    trained here where it is not) and a GAN it adds joins there (``loss.gan.start_step``)."""
    overrides = list(settings.variants[variant])
    if is_branch(settings, variant):
        step = int(settings.extra["branch_from_step"])
        baseline = workspace.baseline_vae(seed)
        checkpoints = workspace.ledger.checkpoints(baseline.run_dir(workspace.runs)) or checkpoint_steps(
            trained(workspace, settings, baseline))
        if step not in checkpoints:
            raise ValueError(f"{settings.name}: branch_from_step={step} but the baseline of seed {seed} has checkpoints "
                             f"at steps {sorted(checkpoints)}; pick one of them")
        overrides += [f"resume='{checkpoints[step]}'"]  # quoted: the file name holds '='
        if any(override.startswith("loss.gan=") for override in overrides):
            overrides.append(f"loss.gan.start_step={step}")
    return RunSpec("train_vae", tuple(workspace.vae_overrides(seed, *overrides)))


def vae_run(workspace: Workspace, settings: Settings, variant: str, seed: int) -> Path:
    """Train (or find) the variant's run of ``seed`` (``vae_spec``; a branch's baseline first)."""
    if is_branch(settings, variant):
        trained(workspace, settings, workspace.baseline_vae(seed))
    return trained(workspace, settings, vae_spec(workspace, settings, variant, seed))


def dit_spec(workspace: Workspace, overrides: list[str], seed: int) -> RunSpec:
    """A ``dit_demo`` run of ``seed`` with ``overrides`` on the seed-0 baseline VAE's latents."""
    return RunSpec("train_dit", tuple(workspace.dit_overrides(seed, *overrides)))


def dit_run(workspace: Workspace, settings: Settings, overrides: list[str], seed: int) -> Path:
    """Train (or find) ``dit_spec``'s run, its inputs (the seed-0 baseline VAE's latents) made first where
    they are not."""
    prepare_dit_inputs(workspace)
    return trained(workspace, settings, dit_spec(workspace, overrides, seed),
                   after=lambda trainer: validate_dit(trainer, workspace))


def dit_validation_loss(run_dir: Path, shards: Path) -> dict[str, float]:
    """A finished DiT run's validation loss (``val_loss``: the module's fixed timesteps and noise) on the
    latents in ``shards``, with its final EMA weights, the weights ``validate_dit`` measures at the end of
    training."""
    module = load_dit_module(run_dir / "checkpoints" / "last.ckpt")
    datamodule = instantiate(module.cfg.data, val_shards=str(shards))
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    [metrics] = trainer.validate(module, datamodule=datamodule, verbose=False)
    return {"val_loss": float(metrics["val/loss"])}


def validate_dit(trainer: L.Trainer, workspace: Workspace) -> dict[str, float]:
    """The trained DiT's validation loss (fixed timesteps and noise) on the held-out latents at the
    training sizes and at ``UNSEEN_BUCKET``, and its prompt adherence on held-out prompts (the adherence
    callback's prompts and sampling settings, the final weights)."""
    module = trainer.lightning_module
    adherence = next((callback for callback in trainer.callbacks if isinstance(callback, PromptAdherenceCallback)), None)
    trainer.callbacks = [callback for callback in trainer.callbacks if callback is not adherence]  # sampled once, below
    losses = {}
    for name, shards in (("val_loss", workspace.latents / "val"), ("val_loss_unseen_size", workspace.unseen_latents)):
        datamodule = instantiate(module.cfg.data, val_shards=str(shards))
        [metrics] = trainer.validate(module, datamodule=datamodule, verbose=False)
        losses[name] = float(metrics["val/loss"])
    if adherence is None:
        raise ValueError("the DiT ablations score prompt adherence with callbacks.adherence (experiment=dit_demo's)")
    captions = [prompt.caption for prompt in adherence.prompts]
    videos = sample_videos(module.transformer, module.vae, module.text_encoder, captions, adherence.settings,
                           adherence.batch_size)
    scores = score_videos(videos, adherence.prompts).scores
    losses.update({f"adherence_{name}": scores[name] for name in ("colour", "shape", "motion")})
    return losses
