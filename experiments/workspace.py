"""The world every ablation shares, written once under ``<out>/workspace``: ``make demo``'s data and recipe.

- ``demo/``: the demo world and sources (``data_pipeline.demo``), curated by the curation pipeline, with
  held-out clips and the tiny text encoder; a demo dir, so the demo's configs (``experiment=vae_demo``,
  ``experiment=dit_demo``, ``data=demo_world``) read it through ``demo_dir=``.
- ``runs/``: every training run, cached by configuration (``experiments.runs``); their records and
  measurements also go to the ledger (``experiments.ledger``; ``make ablations``'s is experiments/ledger/,
  committed), which a clone reads instead of training again.
- The baseline VAE of each seed: ``vae_demo`` (1:192, 128 latent channels, the recipe of
  experiments/vae_recipe) for ``VAE_STEPS`` steps, long enough to pass the demo's VAE targets on held-out
  clips. Every VAE ablation compares its variants with it, seed by seed.
- ``demo/latent_stats.safetensors`` and ``demo/latents/``: the seed-0 baseline's per-channel statistics and
  the DiT inputs it encodes (as ``make demo``; made when the first DiT run needs them), plus held-out latents at a size and duration never trained
  on (``UNSEEN_BUCKET``) for the position ablations.
- ``near_unseen/`` and ``longer/`` (``UNSEEN_WORLDS``): the demo world's held-out combinations rendered at a
  size and duration one step past the training ones in every axis, and at the training size for twice the
  duration, with their latents (the seed-0 baseline's).

Quick mode (``--quick``, the test suite) keeps the shapes and the commands and shrinks the world and steps.
Everything is generated here: nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.demo import generate_demo
from data_pipeline.demo_world import WorldSettings, write_world
from experiments.ledger import Ledger
from experiments.runs import RunSpec, compose, train
from ltx.cli import latent_stats, precompute

UNSEEN_BUCKET = (33, 160, 224)  # frames, height, width: longer and larger than every demo bucket (17x64x64, 17x64x96)
UNSEEN_WORLDS = {  # the world's held-out combinations at sizes or durations never trained on (positions)
    "near_unseen": WorldSettings(train_clips=1, val_clips=24, frames=25, width=128, height=96),  # 4x3x4 latent
    # tokens against the training 3x2x2 (and 3x2x3): the far UNSEEN_BUCKET (5x5x7) is beyond every model
    "longer": WorldSettings(train_clips=1, val_clips=24, frames=33, width=64, height=64),  # 5x2x2: duration only
}
QUICK_UNSEEN_VAL_CLIPS = 2
VAE_STEPS = 6000  # vae_demo's 3,000 reach 24.7-24.9 dB on the card, 4,500 25.2 dB with the evaluator reading the shape
# of only 50 % of the reconstructions (the DiT's ceiling, below its 60 % target), 6,000 26.3 dB and 78 % (vae_recipe)
QUICK_VAE_STEPS = 3
FULL_WORLD = WorldSettings(train_clips=3000, width=64, height=64)  # make demo's (--clip-size 64 --train-clips 3000)
QUICK_WORLD = WorldSettings(train_clips=12, val_clips=2, width=64, height=64)


@dataclass(frozen=True)
class Workspace:
    root: Path
    quick: bool
    ledger_root: Path | None = None  # where the runs' records and measurements go (default: <root>/ledger)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.ledger_root or self.root / "ledger")

    @property
    def demo(self) -> Path:
        return self.root / "demo"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def latents(self) -> Path:
        return self.demo / "latents"

    @property
    def latent_stats(self) -> Path:
        return self.demo / "latent_stats.safetensors"

    @property
    def unseen_latents(self) -> Path:
        return self.root / "latents_unseen" / "val"

    def unseen_world_latents(self, name: str) -> Path:
        """The latents of ``UNSEEN_WORLDS[name]``'s clips."""
        return self.root / name / "latents" / "val"

    def unseen_world(self, name: str) -> WorldSettings:
        world = UNSEEN_WORLDS[name]
        return dataclasses.replace(world, val_clips=QUICK_UNSEEN_VAL_CLIPS) if self.quick else world

    @property
    def vae_steps(self) -> int:
        return QUICK_VAE_STEPS if self.quick else VAE_STEPS

    def vae_overrides(self, seed: int, *extra: str) -> list[str]:
        """A ``vae_demo`` run of ``vae_steps`` with ``seed`` plus ``extra`` overrides (the variant)."""
        overrides = ["experiment=vae_demo", f"demo_dir={self.demo}", f"seed={seed}",
                     f"trainer.max_steps={self.vae_steps}", "callbacks.preemption=null"]
        if self.quick:  # a validation and a checkpoint at every step, the phases of the recipe squeezed in
            overrides += ["data.batch_size=2", "data.batches_per_epoch=1", "scheduler.warmup_steps=1",
                          "trainer.log_every_n_steps=1", "callbacks.checkpoint.every_n_train_steps=1",
                          "vae_training.images_per_clip=2", "vae_training.image_pool=8",
                          "vae_training.deterministic_steps=1", "vae_training.kl_warmup_steps=1",
                          "vae_training.denoise_start_step=1", "vae_training.num_preview_samples=0"]
        return [*overrides, *extra]

    def baseline_vae(self, seed: int) -> RunSpec:
        return RunSpec("train_vae", tuple(self.vae_overrides(seed)))

    def baseline_checkpoint(self, seed: int) -> Path:
        return self.baseline_vae(seed).run_dir(self.runs) / "checkpoints" / "last.ckpt"

    def dit_overrides(self, seed: int, *extra: str) -> list[str]:
        """A ``dit_demo`` run on the seed-0 baseline's latents with ``seed`` plus ``extra`` overrides."""
        overrides = ["experiment=dit_demo", f"demo_dir={self.demo}", f"seed={seed}",
                     f"vae_checkpoint={self.baseline_checkpoint(0)}", f"model.vae.latent_stats={self.latent_stats}",
                     "callbacks.preemption=null"]
        if self.quick:
            overrides += ["trainer.max_steps=3", "trainer.log_every_n_steps=1", "data.batch_size=2", "scheduler.warmup_steps=1", "data.batches_per_epoch=3",
                          "callbacks.checkpoint.every_n_train_steps=3", "callbacks.adherence.every_n_validations=1",
                          "callbacks.adherence.num_prompts=2", "callbacks.adherence.num_steps=2",
                          "dit_training.samples=null"]
        return [*overrides, *extra]


def prepare(root: Path, quick: bool, ledger: Path | None = None) -> Workspace:
    """The workspace with its demo data (curated; skipped where done). What the DiT runs need is made by
    ``prepare_dit_inputs`` when the first one is trained."""
    workspace = Workspace(root, quick, ledger)
    write_demo(workspace)
    return workspace


def prepare_dit_inputs(workspace: Workspace) -> None:
    """The seed-0 baseline VAE, its statistics and latents, and the unseen worlds' latents (each skipped
    where done)."""
    baseline = workspace.baseline_vae(0)
    workspace.ledger.record_training(baseline.run_dir(workspace.runs), train(baseline, workspace.runs))
    encode_latents(workspace)
    for name in UNSEEN_WORLDS:
        encode_unseen_world_latents(workspace, name)


def write_demo(workspace: Workspace) -> None:
    """``make demo``'s first two steps: the demo world and sources, then curation of the training sources."""
    demo, done = workspace.demo, workspace.demo / "workspace.json"
    world = QUICK_WORLD if workspace.quick else FULL_WORLD
    made_by = {"world": repr(world)}
    if done.exists() and json.loads(done.read_text()) == made_by:
        return
    with contextlib.redirect_stdout(io.StringIO()):
        generate_demo(demo, world=world, workers=2)
    command = [sys.executable, "-m", "data_pipeline", f"demo_dir={demo}", f"input={demo / 'train_sources.txt'}",
               f"output={demo / 'curated'}", f"hydra.run.dir={demo / 'logs' / 'curation'}"]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode:
        raise RuntimeError(f"curation of the workspace's demo sources failed ({' '.join(command)}):\n{finished.stderr[-4000:]}")
    done.write_text(json.dumps(made_by))


def encode_latents(workspace: Workspace) -> None:
    """The seed-0 baseline's latent statistics and DiT inputs (``make demo``'s ``latent_stats`` and
    ``precompute``), and held-out latents at ``UNSEEN_BUCKET``; skipped when this VAE made them."""
    checkpoint = workspace.baseline_checkpoint(0)
    made_by = {"vae_checkpoint": str(checkpoint), "unseen_bucket": list(UNSEEN_BUCKET)}
    done = workspace.demo / "latents_done.json"
    if done.exists() and json.loads(done.read_text()) == made_by:
        return
    demo = workspace.demo
    with contextlib.redirect_stdout(io.StringIO()):
        latent_stats.run(compose("latent_stats", ["data=demo_world", f"demo_dir={demo}", f"checkpoint={checkpoint}",
                                                  f"output={workspace.latent_stats}", f"run_dir={demo / 'logs'}"]))
        common = ["data=demo_world", f"demo_dir={demo}", f"vae_checkpoint={checkpoint}",
                  f"model.vae.latent_stats={workspace.latent_stats}"]
        for output in (workspace.latents, workspace.unseen_latents.parent):
            if output.exists():
                shutil.rmtree(output)  # latents of another VAE
        counts = precompute.run(compose("precompute", [*common, f"output={workspace.latents}"]))
        f, h, w = UNSEEN_BUCKET
        unseen = precompute.run(compose("precompute", [*common, f"output={workspace.unseen_latents.parent}",
                                                       "data.train_shards=null", f"data.buckets=[[{f},{h},{w}]]"]))
    if not counts.get("train") or not counts.get("val"):
        raise RuntimeError(f"the workspace's latents are incomplete ({counts}): is {demo} a complete demo dir?")
    if not unseen.get("val"):
        raise RuntimeError(f"no held-out latents at {UNSEEN_BUCKET}: the demo's held-out sources do not fit it")
    done.write_text(json.dumps(made_by))


def encode_unseen_world_latents(workspace: Workspace, name: str) -> None:
    """The demo world's held-out combinations at ``UNSEEN_WORLDS[name]``'s size and duration (rendered as
    ``make demo`` renders the world) and their latents by the seed-0 baseline; skipped when made so."""
    world = workspace.unseen_world(name)
    checkpoint = workspace.baseline_checkpoint(0)
    made_by = {"vae_checkpoint": str(checkpoint), "world": repr(world)}
    root = workspace.root / name
    done = root / "done.json"
    if done.exists() and json.loads(done.read_text()) == made_by:
        return
    if root.exists():
        shutil.rmtree(root)  # another world or VAE
    write_world(root, world, samples_per_shard=8)
    bucket = f"[[{world.frames},{world.height},{world.width}]]"
    with contextlib.redirect_stdout(io.StringIO()):
        counts = precompute.run(compose("precompute", [
            "data=demo_world", f"demo_dir={workspace.demo}", f"vae_checkpoint={checkpoint}",
            f"model.vae.latent_stats={workspace.latent_stats}", f"output={workspace.unseen_world_latents(name).parent}",
            "data.train_shards=null", f"data.val_shards={root / 'val'}", f"data.buckets={bucket}"]))
    if counts.get("val") != world.val_clips:
        raise RuntimeError(f"{counts.get('val')} of the {world.val_clips} held-out clips of {name} were encoded "
                           f"at {bucket}: the clips should fit it exactly")
    done.write_text(json.dumps(made_by))
