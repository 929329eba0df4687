"""Captioners, each registered by name in ltx.registry.CAPTIONERS.

A captioner is a class built with ``__init__(**config)`` that has a ``name`` and
``caption(clip, frames) -> str`` with ``frames`` the clip's frames as ``(N, H, W, 3) uint8``. Captioners
backed by a model check their configuration when built and load the model on first use (``load()``,
once per process: the pipeline may fork workers). Weights are local files; nothing is downloaded.
``sidecar`` sets ``needs_frames = False`` so the caption stage does not decode video for it.
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from data_pipeline.clips import Clip
from ltx.registry import CAPTIONERS

DEFAULT_PREFIXES: tuple[str, ...] = (
    "The video shows", "This video shows", "The video depicts", "This video depicts", "The video features",
    "This video features", "The video captures", "In this video,", "In the video,", "The image shows",
    "This image shows", "The image depicts", "The clip shows", "This clip shows", "The scene shows",
    "a video of", "a video showing", "an image of", "a picture of", "a photo of",
)
DEFAULT_VLM_PROMPT = "Shortly describe the content of this video in two sentences."
_SEPARATORS = " \t,:;-"


class NoCaption(ValueError):
    """A clip has no caption to give (e.g. no sidecar file beside its source)."""


def strip_boilerplate(text: str, prefixes: Sequence[str] = DEFAULT_PREFIXES) -> str:
    """``text`` without leading boilerplate, tidied.

    Rules, in order: whitespace runs (newlines included) become one space; spaces before `,.;:!?` are
    dropped; any of ``prefixes`` at the start is removed, case-insensitively, only when it ends at a
    word boundary ("a video of" does not eat "a video often"; "In this video," needs its comma), with
    the separators (`,:;-` and spaces) after it, repeatedly ("In this video, the video shows a cat" ->
    "A cat"); leading and trailing separators are dropped; when a prefix was removed the new first letter
    is upper-cased. Text without boilerplate keeps its case; no full stop is added.
    ``strip_boilerplate("The video shows")`` is ``""``.
    """
    if not isinstance(text, str):
        raise TypeError(f"strip_boilerplate takes a string, got {type(text).__name__}")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" +([,.;:!?])", r"\1", text)
    patterns = [_prefix_pattern(prefix) for prefix in sorted(prefixes, key=len, reverse=True) if prefix.strip()]
    stripped = False
    while True:
        for pattern in patterns:
            match = pattern.match(text)
            if match:
                text = text[match.end() :].lstrip(_SEPARATORS)
                stripped = True
                break
        else:
            break
    text = text.lstrip(_SEPARATORS).rstrip(_SEPARATORS)
    if stripped and text[:1].islower():
        text = text[0].upper() + text[1:]
    return text


def _prefix_pattern(prefix: str) -> re.Pattern[str]:
    prefix = re.sub(r"\s+", " ", prefix.strip())
    boundary = r"(?!\w)" if prefix[-1].isalnum() else ""
    return re.compile(re.escape(prefix).replace(r"\ ", r"\s+") + boundary, re.IGNORECASE)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available and CPU otherwise when None."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def create_local_open_clip(model_name: str, checkpoint_path: str | os.PathLike | None,
                           device: torch.device) -> tuple[torch.nn.Module, Any]:
    """An open_clip model from a local checkpoint (random weights when None) and its eval transform.

    Configs that would reach the network (``hf-hub:`` names, Hugging Face text towers or tokenizers)
    are refused by ``check_local_open_clip``; call that first, when the stage or captioner is built.
    """
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name,
        pretrained=str(Path(checkpoint_path).expanduser().resolve()) if checkpoint_path is not None else None,
        pretrained_image=False,
        pretrained_text=False,
        device=device,
    )
    return model.eval().requires_grad_(False), preprocess


def check_local_open_clip(model_name: str, checkpoint_path: str | os.PathLike | None, what: str) -> dict:
    """The open_clip config of ``model_name``, or a clear error when it or its checkpoint is unusable offline."""
    if not isinstance(model_name, str) or ":" in model_name:  # before any lookup: "hf-hub:" would download
        raise ValueError(
            f"{what}: open_clip model_name {model_name!r} must be a config name without a schema (no 'hf-hub:' "
            "or 'local-dir:'); register local configs with open_clip.add_model_config"
        )
    import open_clip

    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(f"{what}: unknown open_clip model {model_name!r}; see open_clip.list_models()")
    text_cfg = config.get("text_cfg", {})
    if "hf_model_name" in text_cfg or text_cfg.get("hf_tokenizer_name"):
        raise ValueError(f"{what}: open_clip {model_name!r} takes its text tower or tokenizer from the Hugging "
                         "Face hub; only configs with open_clip's own towers and bundled tokenizer work offline")
    if checkpoint_path is not None and not Path(checkpoint_path).expanduser().is_file():
        raise FileNotFoundError(f"{what}: open_clip checkpoint {str(checkpoint_path)!r} is not a file; download "
                                f"the weights of {model_name!r} and give the local path")
    return config


class LoadOncePerProcess(ABC):
    """Loads a model once per process on first use; drops it when pickled (workers load their own)."""

    _model: Any = None
    _loaded_pid: int | None = None

    def load(self) -> None:
        """Load the model in this process unless it already is."""
        if self._model is None or self._loaded_pid != os.getpid():
            self._load()
            self._loaded_pid = os.getpid()

    @abstractmethod
    def _load(self) -> None:
        """Load the model into ``self._model``."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_model", None)
        state.pop("_loaded_pid", None)
        return state


@CAPTIONERS.register("sidecar")
class SidecarCaptioner:
    """The caption written beside the source: ``NAME.truth.json`` scenes when present, else ``NAME.txt``.

    From ``NAME.truth.json`` (the demo's ground truth: ``{"scenes": [{"start_frame", "end_frame",
    "caption"}, ...]}``) the scene overlapping the clip's frames most is taken (the earliest on a tie);
    when no scene overlaps, or ``use_scenes`` is False, ``NAME.txt`` is read whole (a video2dataset
    ``{key}.txt``), stripped. Neither file raises ``NoCaption``.
    """

    name = "sidecar"
    needs_frames = False

    def __init__(self, use_scenes: bool = True, text_suffix: str = ".txt", scenes_suffix: str = ".truth.json"):
        if not text_suffix.startswith(".") or not scenes_suffix.startswith("."):
            raise ValueError(f"sidecar suffixes must start with '.', got {text_suffix!r} and {scenes_suffix!r}")
        self.use_scenes = use_scenes
        self.text_suffix = text_suffix
        self.scenes_suffix = scenes_suffix

    def caption(self, clip: Clip, frames: np.ndarray) -> str:
        source = Path(clip.source)
        scenes_path = source.with_name(source.stem + self.scenes_suffix)
        if self.use_scenes and scenes_path.is_file():
            caption = _scene_caption(scenes_path, clip.start_frame, clip.end_frame)
            if caption is not None:
                return caption
        text_path = source.with_name(source.stem + self.text_suffix)
        if not text_path.is_file():
            looked = f"{text_path.name}" + (f" or a scene of {scenes_path.name}" if self.use_scenes else "")
            raise NoCaption(f"no caption beside {source}: looked for {looked}")
        return text_path.read_text(encoding="utf-8").strip()


def _scene_caption(path: Path, start: int, end: int) -> str | None:
    """The caption of the scene in ``path`` overlapping ``[start, end)`` most, or None when none overlaps."""
    try:
        scenes = json.loads(path.read_text(encoding="utf-8")).get("scenes", [])
        spans = [(int(s["start_frame"]), int(s["end_frame"]), str(s["caption"])) for s in scenes]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise NoCaption(f"cannot read scenes from {path}: {type(error).__name__}: {error}") from error
    overlaps = [(min(end, scene_end) - max(start, scene_start), caption) for scene_start, scene_end, caption in spans]
    best = max(overlaps, key=lambda pair: pair[0], default=(0, ""))  # max keeps the first of equals
    return best[1] if best[0] > 0 else None


@CAPTIONERS.register("coca")
class CocaCaptioner(LoadOncePerProcess):
    """open_clip CoCa captioning one frame: the middle one of the frames it is given.

    Args:
        model_name: a CoCa config ("coca_ViT-L-14", or one added with ``open_clip.add_model_config``).
        checkpoint_path: a local open_clip checkpoint of that model (e.g. the mscoco-finetuned weights).
        allow_random_weights: build without a checkpoint (random weights, nonsense captions): tests only.
        generation_type: "beam_search" (open_clip's default), "top_k" or "top_p".
        max_tokens, min_tokens: bounds on the generated length, start token included.
        device: None picks CUDA when available.
    """

    name = "coca"

    def __init__(self, model_name: str = "coca_ViT-L-14", checkpoint_path: str | os.PathLike | None = None,
                 allow_random_weights: bool = False, generation_type: str = "beam_search", max_tokens: int = 30,
                 min_tokens: int = 5, top_k: int = 1, device: str | None = None):
        if checkpoint_path is None and not allow_random_weights:
            raise ValueError(
                f"coca captioner: `checkpoint_path` is required, a local open_clip checkpoint of {model_name!r} "
                "(e.g. open_clip_pytorch_model.bin of laion/mscoco_finetuned_CoCa-ViT-L-14-laion2B-s13B-b90k); "
                "allow_random_weights=True gives random weights, for tests only"
            )
        config = check_local_open_clip(model_name, checkpoint_path, "coca captioner")
        if "multimodal_cfg" not in config:
            raise ValueError(f"coca captioner: open_clip {model_name!r} is not a CoCa model (no multimodal_cfg)")
        if generation_type not in ("beam_search", "top_k", "top_p"):
            raise ValueError(f"coca captioner: generation_type must be beam_search, top_k or top_p, got {generation_type!r}")
        if not 0 < min_tokens < max_tokens:
            raise ValueError(f"coca captioner: need 0 < min_tokens < max_tokens, got {min_tokens} and {max_tokens}")
        self.model_name = model_name
        self.checkpoint_path = checkpoint_path
        self.generation_type = generation_type
        self.max_tokens = int(max_tokens)
        self.min_tokens = int(min_tokens)
        self.top_k = int(top_k)
        self.device = resolve_device(device)

    def _load(self) -> None:
        self._model, self._preprocess = create_local_open_clip(self.model_name, self.checkpoint_path, self.device)

    @torch.no_grad()
    def caption(self, clip: Clip, frames: np.ndarray) -> str:
        import open_clip

        self.load()
        frame = _check_frames(frames, "coca")[len(frames) // 2]
        image = self._preprocess(Image.fromarray(frame))[None].to(self.device)  # (1, 3, S, S)
        tokens = self._model.generate(image, seq_len=self.max_tokens, min_seq_len=self.min_tokens,
                                      generation_type=self.generation_type, top_k=self.top_k)  # (1, T)
        text = open_clip.decode(tokens[0]).split("<end_of_text>")[0].replace("<start_of_text>", "")
        return strip_boilerplate(text)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_preprocess", None)
        return state


@CAPTIONERS.register("vlm")
class VlmCaptioner(LoadOncePerProcess):
    """A transformers image-text-to-text model (Qwen2.5-VL, LLaVA, ...) from a local directory.

    The frames go in as images of one user turn followed by ``prompt`` (or as one video with
    ``as_video``, for models whose processor takes videos, e.g. Qwen2-VL), through the processor's chat
    template; decoding is greedy and only the new tokens are kept. Tested with tiny random LLaVA
    (CLIP vision + Llama) and Qwen2.5-VL models saved by ``save_pretrained``.

    Args:
        path: a directory holding the model and its processor (``config.json``, ``preprocessor_config.json``,
            tokenizer files); never a hub id.
        prompt: the instruction after the frames.
        max_new_tokens: generated tokens at most.
        num_frames: how many of the given frames to use (evenly spaced); None uses all.
        as_video: pass the frames as one video instead of separate images.
        dtype: weights' dtype ("bfloat16", ...); "auto" keeps the saved one, None loads float32.
        device: None picks CUDA when available.
    """

    name = "vlm"

    def __init__(self, path: str | os.PathLike, prompt: str = DEFAULT_VLM_PROMPT, max_new_tokens: int = 96,
                 num_frames: int | None = None, as_video: bool = False, dtype: str | None = "auto",
                 device: str | None = None):
        if path is None:
            raise ValueError("vlm captioner needs `path`: a local model directory (e.g. a downloaded "
                             "Qwen2.5-VL-7B-Instruct folder); hub ids are not fetched")
        directory = Path(path).expanduser()
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(
                f"vlm captioner: {str(path)!r} is not a local model directory with a config.json; download the "
                "model (e.g. Qwen/Qwen2.5-VL-7B-Instruct) and give its folder as `path` (hub ids are not fetched)"
            )
        if not prompt.strip():
            raise ValueError("vlm captioner: `prompt` must not be empty")
        if max_new_tokens < 1 or (num_frames is not None and num_frames < 1):
            raise ValueError(f"vlm captioner: max_new_tokens and num_frames must be positive, got "
                             f"{max_new_tokens} and {num_frames}")
        from ltx.text.encoders import resolve_dtype

        self.path = directory
        self.prompt = prompt
        self.max_new_tokens = int(max_new_tokens)
        self.num_frames = num_frames
        self.as_video = as_video
        self.dtype = "auto" if dtype == "auto" else resolve_dtype(dtype)
        self.device = resolve_device(device)

    def _load(self) -> None:
        import transformers

        self._processor = transformers.AutoProcessor.from_pretrained(str(self.path), local_files_only=True)
        if getattr(self._processor, "chat_template", None) is None:
            raise ValueError(f"vlm captioner: the processor in {str(self.path)!r} has no chat template; use an "
                             "instruction-tuned model whose folder has chat_template.json or chat_template.jinja")
        auto = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
        self._model = auto.from_pretrained(str(self.path), local_files_only=True, torch_dtype=self.dtype)
        self._model.to(self.device).eval().requires_grad_(False)

    def build_prompt(self, num_images: int) -> str:
        """The processor's chat template applied to one user turn: the frames, then ``prompt``."""
        media = [{"type": "video"}] if self.as_video else [{"type": "image"}] * num_images
        messages = [{"role": "user", "content": [*media, {"type": "text", "text": self.prompt}]}]
        return self._processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @torch.no_grad()
    def caption(self, clip: Clip, frames: np.ndarray) -> str:
        self.load()
        frames = _check_frames(frames, "vlm")
        if self.num_frames is not None and self.num_frames < len(frames):
            frames = frames[np.linspace(0, len(frames) - 1, self.num_frames).round().astype(int)]
        media = {"videos": [frames]} if self.as_video else {"images": [Image.fromarray(f) for f in frames]}
        inputs = self._processor(text=[self.build_prompt(len(frames))], return_tensors="pt", **media)
        dtype = self._model.dtype  # pixel values follow the weights' dtype
        inputs = {key: value.to(self.device, dtype if value.is_floating_point() else value.dtype)
                  if isinstance(value, torch.Tensor) else value for key, value in inputs.items()}
        output = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)  # (1, L + new)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]  # (1, new)
        return self._processor.batch_decode(new_tokens, skip_special_tokens=True)[0].strip()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_processor", None)
        return state


def _check_frames(frames: np.ndarray, who: str) -> np.ndarray:
    """``frames`` as ``(N, H, W, 3) uint8`` with N >= 1, or a clear error."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"{who} captioner needs frames as (N, H, W, 3) uint8 with N >= 1, got "
                         f"{frames.shape} {frames.dtype}")
    return frames
