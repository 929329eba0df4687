"""Aesthetic scoring: the LAION aesthetic predictor v2 on a few frames of each clip; low scores rejected."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from data_pipeline.captioners import (
    LoadOncePerProcess,
    check_local_open_clip,
    create_local_open_clip,
    resolve_device,
)
from data_pipeline.clips import Clip, Rejection
from data_pipeline.frames import clip_crop, read_frames
from ltx.data.video_io import VideoDecodeError
from ltx.registry import CURATION_STAGES

LAION_PREDICTOR_KEYS = tuple(f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias"))
REDUCTIONS = ("mean", "min")


class AestheticMLP(nn.Module):
    """The LAION predictor head: Linear input-1024-128-64-16-1 with dropouts and no activations.

    Its state-dict names are those of ``sac+logos+ava1-l14-linearMSE.pth`` (christophschuhmann/
    improved-aesthetic-predictor): ``layers.{0,2,4,6,7}.{weight,bias}`` (1, 3 and 5 are the dropouts).
    """

    def __init__(self, input_dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)  # (N, D) -> (N, 1)


def load_predictor(path: str | os.PathLike) -> AestheticMLP:
    """The predictor head from a local state dict (``torch.save`` file or ``.safetensors``), input dim inferred."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a Lightning checkpoint
        state = state["state_dict"]
    if not isinstance(state, dict) or "layers.0.weight" not in state:
        raise ValueError(f"aesthetic predictor {str(path)!r} is not a LAION predictor state dict; expected the keys "
                         f"{', '.join(LAION_PREDICTOR_KEYS)}")
    predictor = AestheticMLP(int(state["layers.0.weight"].shape[1]))
    try:
        predictor.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"aesthetic predictor {str(path)!r} does not fit the 1024-128-64-16-1 head: {error}") from None
    return predictor.eval().requires_grad_(False)


@CURATION_STAGES.register("aesthetic")
class AestheticStage(LoadOncePerProcess):
    """LAION aesthetic predictor v2: CLIP image embeddings of a few frames, L2-normalised, through an MLP.

    Sets ``aesthetic_score`` (the per-frame scores go to ``extra["aesthetic_frame_scores"]``) and rejects
    ``low_aesthetic`` below ``min_score``. Both weights are local files and required: there is no
    random-weight fallback, so a misconfigured run never writes meaningless scores.

    Args:
        clip_checkpoint: local open_clip checkpoint of ``model_name`` (for the default, OpenAI's ViT-L/14:
            ``open_clip_pytorch_model.bin`` of timm/vit_large_patch14_clip_224.openai).
        predictor_path: local predictor weights (``sac+logos+ava1-l14-linearMSE.pth``, or ``.safetensors``).
        model_name: open_clip config; "ViT-L-14-quickgelu" because the OpenAI weights use QuickGELU
            (plain "ViT-L-14" would build GELU and give different embeddings from the same weights).
        frame_fractions: where in the clip to score, as fractions of its length.
        reduce: "mean" or "min" of the frame scores.
        min_score: reject below this (Open-Sora uses 4.5-5); None scores without rejecting.
        device: None picks CUDA when available.

    Preprocessing (resize, centre crop, normalisation) and the input size are open_clip's own eval
    transform for ``model_name``. Models load on the first clip, once per process.
    """

    name = "aesthetic"

    def __init__(self, clip_checkpoint: str | os.PathLike | None = None, predictor_path: str | os.PathLike | None = None,
                 model_name: str = "ViT-L-14-quickgelu", frame_fractions: Sequence[float] = (0.1, 0.5, 0.9),
                 reduce: str = "mean", min_score: float | None = 4.5, device: str | None = None):
        missing = [key for key, value in (("clip_checkpoint", clip_checkpoint), ("predictor_path", predictor_path))
                   if value is None]
        if missing:
            raise ValueError(
                f"aesthetic stage needs local weights: {' and '.join(missing)} not given. Provide clip_checkpoint "
                f"(an open_clip checkpoint of {model_name!r}, e.g. open_clip_pytorch_model.bin of "
                "timm/vit_large_patch14_clip_224.openai) and predictor_path (the LAION predictor "
                "sac+logos+ava1-l14-linearMSE.pth), or turn the stage off by removing 'aesthetic' from the stages"
            )
        config = check_local_open_clip(model_name, clip_checkpoint, "aesthetic stage")
        if not Path(predictor_path).expanduser().is_file():
            raise FileNotFoundError(f"aesthetic stage: predictor_path {str(predictor_path)!r} is not a file")
        self.frame_fractions = tuple(float(f) for f in frame_fractions)
        if not self.frame_fractions or not all(0.0 <= f <= 1.0 for f in self.frame_fractions):
            raise ValueError(f"aesthetic stage: frame_fractions must be fractions in [0, 1], got {frame_fractions!r}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"aesthetic stage: reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
        self.predictor = load_predictor(predictor_path)  # small: read now so a wrong file fails at once
        input_dim = self.predictor.layers[0].in_features
        if config.get("embed_dim") != input_dim:
            raise ValueError(f"aesthetic stage: {model_name!r} embeds in {config.get('embed_dim')} dims but the "
                             f"predictor {str(predictor_path)!r} takes {input_dim}")
        self.clip_checkpoint = clip_checkpoint
        self.model_name = model_name
        self.reduce = reduce
        self.min_score = None if min_score is None else float(min_score)
        self.device = resolve_device(device)

    def _load(self) -> None:
        self._model, self._preprocess = create_local_open_clip(self.model_name, self.clip_checkpoint, self.device)
        self.predictor.to(self.device)

    def frame_indices(self, clip: Clip) -> list[int]:
        """Source-frame indices at ``frame_fractions`` of the clip."""
        return [clip.start_frame + min(clip.num_frames - 1, int(f * clip.num_frames)) for f in self.frame_fractions]

    @torch.no_grad()
    def score_frames(self, frames: np.ndarray) -> list[float]:
        """Aesthetic score of each frame of ``(N, H, W, 3) uint8``."""
        self.load()
        images = torch.stack([self._preprocess(Image.fromarray(frame)) for frame in frames]).to(self.device)  # (N, 3, S, S)
        embeddings = self._model.encode_image(images).float()  # (N, D)
        embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return self.predictor(embeddings)[:, 0].tolist()  # (N,)

    def __call__(self, clip: Clip) -> list[Clip | Rejection]:
        self.load()  # outside the per-clip handling: broken weights are a configuration error, not a bad clip
        if clip.num_frames <= 0:
            return [Rejection(clip.key, self.name, "no_frames", f"frames [{clip.start_frame}, {clip.end_frame})")]
        try:
            frames = read_frames(clip.source, self.frame_indices(clip), crop=clip_crop(clip))
        except (VideoDecodeError, OSError) as error:
            return [Rejection(clip.key, self.name, "unreadable", str(error))]
        scores = self.score_frames(frames)
        score = float(np.mean(scores) if self.reduce == "mean" else np.min(scores))
        clip = clip.replace(aesthetic_score=score, extra={**clip.extra, "aesthetic_frame_scores": scores})
        if self.min_score is not None and score < self.min_score:
            return [Rejection(clip.key, self.name, "low_aesthetic", f"score {score:.3f} < {self.min_score}")]
        return [clip]

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_preprocess", None)
        return state
