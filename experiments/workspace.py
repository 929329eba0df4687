"""The data every ablation shares, written once under ``<out>/workspace``: the demo sources packed into
shards (training and held-out), the tiny text encoder, a tiny VAE trained on them and the latents it
encodes (for the DiT ablations), including held-out latents at a size and duration never trained on.
Everything is generated here: nothing is downloaded."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.demo import generate_demo
from experiments.runs import RunSpec, compose, train
from ltx.cli import precompute

UNSEEN_BUCKET = (33, 160, 224)  # frames, height, width: longer and larger than every bucket of conf/data/demo.yaml


@dataclass(frozen=True)
class Workspace:
    root: Path
    quick: bool

    @property
    def demo(self) -> Path:
        return self.root / "demo"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def latents(self) -> Path:
        return self.root / "latents"

    @property
    def unseen_latents(self) -> Path:
        return self.root / "latents_unseen" / "val"

    def video_overrides(self) -> list[str]:
        """Demo shards for training, the held-out demo samples for validation, CSV logs, no EMA (short
        runs: validation and evaluation see the trained weights)."""
        return ["logger=csv", f"data.train_shards={self.demo / 'shards'}", f"data.val_shards={self.demo / 'val'}",
                "callbacks.ema=null", "callbacks.preemption=null"]

    def latent_overrides(self) -> list[str]:
        return ["logger=csv", "data=latents", f"data.train_shards={self.latents / 'train'}",
                f"data.val_shards={self.latents / 'val'}", f"vae_checkpoint={self.shared_vae_checkpoint}",
                f"text_encoder.kwargs.path={self.demo / 'text_encoder'}", "dit_training.samples=null",
                "callbacks.ema=null", "callbacks.preemption=null"]

    @property
    def shared_vae(self) -> RunSpec:
        """The VAE whose latents the DiT ablations train on (also the decoder-denoising ablation's VAE)."""
        steps = 2 if self.quick else 150
        return RunSpec("train_vae", tuple(vae_run_overrides(self, steps)))

    @property
    def shared_vae_checkpoint(self) -> Path:
        return self.shared_vae.run_dir(self.runs) / "checkpoints" / "last.ckpt"


def vae_run_overrides(workspace: Workspace, steps: int, *extra: str) -> list[str]:
    """A VAE run of ``steps`` steps (GAN from a third of them), validation every 25 steps."""
    every = max(1, min(25, steps))
    return [*workspace.video_overrides(), f"trainer.max_steps={steps}", f"trainer.log_every_n_steps={max(1, steps // 30)}",
            f"data.batches_per_epoch={every}", f"callbacks.checkpoint.every_n_train_steps={steps}",
            f"loss.gan.start_step={steps // 3}", "vae_training.num_preview_samples=0", *extra]


def prepare(root: Path, quick: bool) -> Workspace:
    """The demo data, the shared VAE and its latents (skipped where already written)."""
    workspace = Workspace(root, quick)
    if not (workspace.demo / "val").exists():
        with contextlib.redirect_stdout(io.StringIO()):
            generate_demo(workspace.demo)
    train(workspace.shared_vae, workspace.runs)
    encode_latents(workspace, workspace.latents, None, with_train=True)
    encode_latents(workspace, workspace.unseen_latents.parent, (UNSEEN_BUCKET,), with_train=False)
    return workspace


def encode_latents(workspace: Workspace, output: Path, buckets: tuple[tuple[int, int, int], ...] | None,
                   with_train: bool) -> None:
    """Precompute DiT inputs with the shared VAE (``ltx.cli.precompute``) at ``buckets`` (None: the demo
    data config's), unless latents of this VAE and these buckets are already there."""
    made_by = {"vae_checkpoint": str(workspace.shared_vae_checkpoint), "buckets": buckets, "with_train": with_train}
    done = output / "done.json"
    if done.exists() and json.loads(done.read_text()).get("made_by") == json.loads(json.dumps(made_by)):
        return
    overrides = [f"vae_checkpoint={workspace.shared_vae_checkpoint}", f"output={output}",
                 f"text_encoder.kwargs.path={workspace.demo / 'text_encoder'}",
                 f"data.train_shards={workspace.demo / 'shards' if with_train else 'null'}",
                 f"data.val_shards={workspace.demo / 'val'}", "samples_per_shard=4"]
    if buckets:
        overrides.append("data.buckets=[" + ",".join(f"[{f},{h},{w}]" for f, h, w in buckets) + "]")
    if output.exists():
        shutil.rmtree(output)  # latents of another VAE or other buckets
    with contextlib.redirect_stdout(io.StringIO()):
        counts = precompute.run(compose("precompute", overrides))
    if not counts.get("val"):
        raise RuntimeError(f"no held-out latents at buckets {buckets}: the demo's held-out sources do not fit them")
    done.write_text(json.dumps({"counts": counts, "made_by": made_by}))
