"""Prompt adherence on the demo world's held-out prompts: sample them in batches, read the videos back with
the demo-world evaluator, and a callback that logs the accuracies after DiT validations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import lightning as L
import torch

from ltx.evaluation import DemoWorldEvaluator, Prediction, SceneLabels, held_out_prompts, score
from ltx.models.dit import VideoTransformer
from ltx.models.vae import VideoAutoencoder
from ltx.sampling import image_conditioning
from ltx.shapes import TEMPORAL_COMPRESSION, check_video_shape
from ltx.text.encoders import TextEncoder
from ltx.training.samples import SampleSettings, generate

ADHERENCE_ATTRIBUTES = ("colour", "shape", "motion")


@dataclass(frozen=True)
class AdherenceResult:
    """What the evaluator read from each video and the accuracies (``ltx.evaluation.score``: colour, shape,
    motion, all three, found)."""

    predictions: list[Prediction]
    labels: list[SceneLabels]
    scores: dict[str, float]

    def correct(self, index: int) -> dict[str, bool]:
        """Per attribute, whether video ``index`` shows what its prompt asked for."""
        prediction, label = self.predictions[index], self.labels[index]
        return {name: getattr(prediction, name) == getattr(label, name) for name in ADHERENCE_ATTRIBUTES}


def score_videos(videos: torch.Tensor | Sequence, labels: Sequence, evaluator: DemoWorldEvaluator | None = None
                 ) -> AdherenceResult:
    """Read every video (``DemoWorldEvaluator.predict`` layouts: float `(3, F, H, W)` in [-1, 1] or uint8
    `(F, H, W, 3)`) and score it against its labels (anything with ``colour``, ``shape``, ``motion``: a
    ``DemoPrompt`` or ``SceneLabels``). The report card and the callback both score through here."""
    if len(videos) != len(labels):
        raise ValueError(f"{len(videos)} videos for {len(labels)} labels")
    evaluator = evaluator or DemoWorldEvaluator()
    predictions = [evaluator.predict(video) for video in videos]
    labels = [SceneLabels(label.colour, label.shape, label.motion) for label in labels]
    return AdherenceResult(predictions, labels, score(predictions, labels))


@torch.no_grad()
def sample_videos(transformer: VideoTransformer, vae: VideoAutoencoder, text_encoder: TextEncoder,
                  captions: Sequence[str], settings: SampleSettings, batch_size: int = 8,
                  images: torch.Tensor | None = None, image_noise_scale: float = 0.15) -> torch.Tensor:
    """Videos `(N, 3, F, H, W)` in [-1, 1], on the CPU, for ``captions``, ``batch_size`` prompts per call of
    ``generate``; batch k draws with seed ``settings.seed + k``. ``images`` `(N, 3, H, W)` in [-1, 1]:
    image-to-video, each video conditioned on its image as frame 0 (``image_conditioning``)."""
    if not captions:
        raise ValueError("no captions to sample")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if images is not None and (images.ndim != 4 or images.shape[0] != len(captions)):
        raise ValueError(f"images must be (N={len(captions)}, 3, H, W), one per caption, got {tuple(images.shape)}")
    device = next(vae.parameters()).device
    latent_frames = 1 + (settings.frames - 1) // TEMPORAL_COMPRESSION
    videos = []
    for batch, start in enumerate(range(0, len(captions), batch_size)):
        conditioning = None
        if images is not None:
            chunk = images[start : start + batch_size].to(device)  # (b, 3, H, W)
            conditioning = image_conditioning(vae, chunk, latent_frames, noise_scale=image_noise_scale)
        chunk_settings = replace(settings, seed=settings.seed + batch)
        video = generate(transformer, vae, text_encoder, list(captions[start : start + batch_size]), chunk_settings,
                         conditioning=conditioning)
        videos.append(video.cpu())  # (b, 3, F, H, W)
    return torch.cat(videos)


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"PromptAdherenceCallback {name} must be a positive int, got {value!r}")
    return value


class PromptAdherenceCallback(L.Callback):
    """After every ``every_n_validations``-th validation (the first included; not the sanity check), sample
    ``held_out_prompts(num_prompts)`` (colour, shape, motion combinations no training clip shows) with the
    module's DiT as validation left it (the EMA weights while ``EMACallback`` has them swapped in), read
    the videos with the demo-world evaluator and log ``val/adherence_colour``, ``val/adherence_shape`` and
    ``val/adherence_motion`` (fractions in [0, 1]) to every logger. Needs a module with ``transformer``,
    ``vae`` and ``text_encoder`` (the DiT stage). Rank 0 samples, or every rank when the DiT is sharded."""

    def __init__(self, every_n_validations: int = 1, num_prompts: int = 24, frames: int = 17, height: int = 128,
                 width: int = 128, num_steps: int = 10, guidance_scale: float = 3.0, batch_size: int = 8,
                 fps: float = 24.0, seed: int = 0):
        super().__init__()
        self.every_n_validations = _positive_int("every_n_validations", every_n_validations)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.prompts = held_out_prompts(_positive_int("num_prompts", num_prompts))
        _positive_int("num_steps", num_steps)
        check_video_shape(frames, height, width, what="PromptAdherenceCallback sample size")
        if not guidance_scale >= 1.0:
            raise ValueError(f"PromptAdherenceCallback guidance_scale must be >= 1 (1: no guidance), got {guidance_scale!r}")
        if not fps > 0:
            raise ValueError(f"PromptAdherenceCallback fps must be positive, got {fps!r}")
        self.settings = SampleSettings(frames=frames, height=height, width=width, fps=float(fps), num_steps=num_steps,
                                       guidance_scale=float(guidance_scale), seed=seed)
        self.validations = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        missing = [name for name in ("transformer", "vae", "text_encoder") if not hasattr(pl_module, name)]
        if missing:
            raise TypeError(f"PromptAdherenceCallback samples a DiT stage (a module with transformer, vae and "
                            f"text_encoder); {type(pl_module).__name__} has no {', '.join(missing)}")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not (trainer.is_global_zero or getattr(pl_module, "sharded", False)):
            return
        self.validations += 1
        if (self.validations - 1) % self.every_n_validations:
            return
        captions = [prompt.caption for prompt in self.prompts]
        videos = sample_videos(pl_module.transformer, pl_module.vae, pl_module.text_encoder, captions, self.settings,
                               self.batch_size)
        if not trainer.is_global_zero:
            return
        result = score_videos(videos, self.prompts)
        for attribute in ADHERENCE_ATTRIBUTES:
            pl_module.log(f"val/adherence_{attribute}", result.scores[attribute], rank_zero_only=True)
