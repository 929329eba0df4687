"""Generate a video from a DiT-stage checkpoint: text-to-video, or image-to-video with ``image=``.

``python -m ltx.cli.sample prompt="a red circle ..." [image=frame.png] [checkpoint=...]`` (``make sample``).
The checkpoint holds the frozen VAE (with its latent statistics) the DiT was trained with, and decodes with
it; ``vae_checkpoint=`` / ``latent_stats=`` name the VAE and statistics you expect, and sampling refuses a
DiT trained on latents of other ones.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ltx.cli.train import CONFIG_DIR
from ltx.data.buckets import Bucket
from ltx.data.transforms import resize_and_crop
from ltx.data.video_io import decode_frames, decode_png, probe_video
from ltx.interop.lora import apply_lora_file
from ltx.sampling import (
    FrameConditioning,
    image_conditioning,
    last_image_conditioning,
    merge_conditionings,
    region_conditioning,
)
from ltx.training.build import read_latent_statistics, vae_from_checkpoint
from ltx.training.checkpoints import load_full_checkpoint, match_shapes
from ltx.training.dit_module import DiTModule
from ltx.training.ema import ema_state_dict, ema_trainable_state_dict
from ltx.training.latent_record import LatentRecord, statistics_fingerprint, vae_weights_fingerprint
from ltx.training.lora import FinetuneSettings, has_lora, scale_adapters, trainable_names
from ltx.training.samples import SampleSettings, generate, write_video


def latest_checkpoint(runs_dir: str | Path) -> Path:
    """The newest ``last.ckpt`` of a DiT run under ``runs_dir``."""
    candidates = sorted(Path(runs_dir).glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    candidates = [path for path in candidates if _stage(path) == "dit"]
    if not candidates:
        raise FileNotFoundError(f"no DiT checkpoint under {runs_dir}: train one with `make train-dit` "
                                f"(after `make demo` or `make train-vae`), or pass checkpoint=PATH")
    return candidates[-1]


def _stage(path: Path) -> str | None:
    metadata = path / "meta.pt" if path.is_dir() else path  # distributed checkpoints keep it in meta.pt
    checkpoint = torch.load(metadata, map_location="cpu", weights_only=True, mmap=True)
    return checkpoint.get("hyper_parameters", {}).get("cfg", {}).get("stage")


def load_dit_module(path: str | Path, use_ema: bool = True) -> DiTModule:
    """A DiTModule with the checkpoint's weights (the DiT's EMA weights with ``use_ema``), its frozen VAE and
    text encoder restored from the checkpoint itself (no VAE checkpoint needed). ``module.latent_record``:
    that VAE and its statistics, with the paths the DiT's run configured them from."""
    checkpoint = load_full_checkpoint(path)  # a file, or a distributed checkpoint gathered here
    cfg = OmegaConf.create(checkpoint["hyper_parameters"]["cfg"])
    if cfg.get("stage") != "dit":
        raise ValueError(f"{path} is a {cfg.get('stage')!r}-stage checkpoint, not a DiT one")
    trained_with = {"vae_checkpoint": cfg.get("vae_checkpoint"), "model": {"vae": {
        "pretrained": cfg.model.vae.get("pretrained"), "latent_stats": cfg.model.vae.get("latent_stats")}}}
    lora = FinetuneSettings.from_config(cfg.get("finetune")).lora
    cfg.vae_checkpoint = None
    cfg.model.vae.pretrained = None
    cfg.model.vae.latent_stats = None
    if lora:  # the checkpoint holds the adapters; the frozen base comes from where the run read it
        base = Path(str(cfg.model.dit.get("pretrained") or "")).expanduser()
        if not base.exists():
            raise FileNotFoundError(f"{path} is a LoRA run's checkpoint (adapters only); its base DiT "
                                    f"model.dit.pretrained={cfg.model.dit.get('pretrained')!r} is not here. Put the "
                                    f"base weights there (or a link), then sample again")
    else:
        cfg.model.dit.pretrained = None
    cfg.weights_from_checkpoint = True  # every other weight, the frozen VAE's included, comes from the state dict
    module = DiTModule(cfg)
    module.on_load_checkpoint(checkpoint)  # sets the EMA weights aside as module.checkpoint_ema
    module.load_state_dict(match_shapes(checkpoint["state_dict"], module), strict=not lora)
    if use_ema and module.checkpoint_ema:
        if lora:
            averaged = ema_trainable_state_dict(module.checkpoint_ema)
            result = module.transformer.load_state_dict(averaged, strict=False)
            if result.unexpected_keys or set(averaged) != trainable_names(module.transformer):
                raise ValueError(f"{path}: the EMA adapters do not match the run's adapters")
        else:
            ema = match_shapes(ema_state_dict(module.checkpoint_ema), module.transformer)
            module.transformer.load_state_dict(ema, strict=True)
    module.latent_record = LatentRecord.of_config(module.vae, trained_with)
    return module.eval()


def add_sampling_lora(transformer: torch.nn.Module, lora: str | None, scale: float) -> None:
    """Add a diffusers LoRA file's adapters at ``scale``; without a file, scale a LoRA run's own adapters."""
    if lora and has_lora(transformer):
        raise ValueError("this checkpoint is a LoRA run: its adapters are already in the DiT. Sample without lora=, "
                         "set lora_scale to change their strength, or merge them first (make convert)")
    if lora:
        apply_lora_file(transformer, lora, scale)
    elif has_lora(transformer):
        scale_adapters(transformer, scale)


def check_expected_vae(trained: LatentRecord, checkpoint: Path, vae_checkpoint: str | None,
                       latent_stats: str | None) -> None:
    """Refuse a VAE (``vae_checkpoint``, its EMA weights) or latent statistics (``latent_stats``) other than
    those of the latents the DiT was trained on (``trained``); None checks nothing."""
    given = []
    if vae_checkpoint and vae_weights_fingerprint(vae_from_checkpoint(vae_checkpoint)) != trained.vae_fingerprint:
        given.append(f"vae_checkpoint={vae_checkpoint}")
    if latent_stats and statistics_fingerprint(*read_latent_statistics(latent_stats)) != \
            trained.latent_stats_fingerprint:
        given.append(f"latent_stats={latent_stats}")
    if not given:
        return
    wanted = replace(trained, latent_stats=latent_stats or trained.latent_stats)
    if vae_checkpoint:
        wanted = replace(wanted, vae_checkpoint=vae_checkpoint, vae_pretrained=None)
    raise ValueError(
        f"the DiT checkpoint {checkpoint} was trained on latents of {trained.describe()}; sampling was given "
        f"another {' and '.join(given)}. Sample without that override (the checkpoint holds the VAE and "
        f"statistics the DiT was trained with), or train a DiT on latents of yours: `python -m ltx.cli.precompute "
        f"{wanted.overrides()} output=DIR`, then `python -m ltx.cli.train --config-name train_dit data=latents "
        f"data.train_shards=DIR/train data.val_shards=DIR/val {wanted.overrides()}`")


def conditioning_from_inputs(vae: torch.nn.Module, cfg: DictConfig) -> FrameConditioning | None:
    """What the sample is given: ``image`` (first frame), ``last_image`` (last frame), ``video`` with ``mask``
    (inpainting: white pixels kept), ``outpaint`` (the centred fraction kept) or ``video_frames`` (latent frames
    kept: prefix, suffix, keyframes); combined when several are set."""
    latent_frames = 1 + (cfg.frames - 1) // 8
    first = last = region = None
    if cfg.get("image"):
        first = image_conditioning(vae, read_image(cfg.image, cfg.height, cfg.width), latent_frames,
                                   noise_scale=cfg.image_noise_scale)
    if cfg.get("last_image"):
        last = last_image_conditioning(vae, read_image(cfg.last_image, cfg.height, cfg.width), latent_frames,
                                       noise_scale=cfg.image_noise_scale)
    sources = [key for key in ("mask", "outpaint", "video_frames") if cfg.get(key) is not None]
    if sources:
        if not cfg.get("video"):
            raise ValueError(f"{sources[0]}= keeps part of a video (inpainting, outpainting, given frames): give it as "
                             f"video=PATH")
        if len(sources) > 1:
            raise ValueError(f"give one of mask= (inpainting), outpaint= (a centred fraction) and video_frames= "
                             f"(latent frames of the video), not {' and '.join(sources)}")
        video = read_video(cfg.video, cfg.frames, cfg.height, cfg.width)  # (1, 3, F, H, W)
        if cfg.get("video_frames") is not None:
            given = frames_mask(list(cfg.video_frames), latent_frames, cfg.height // 32, cfg.width // 32)
        elif cfg.get("mask"):
            given = read_mask(cfg.mask, cfg.height, cfg.width)
        else:
            given = centre_box(cfg.height, cfg.width, float(cfg.outpaint))
        region = region_conditioning(vae, video, given)
    elif cfg.get("video"):
        raise ValueError("video= is the source of mask= (inpainting), outpaint= or video_frames=: set one of them")
    return merge_conditionings(first, last, region)


@torch.no_grad()
def reference_from_input(vae: torch.nn.Module, cfg: DictConfig) -> torch.Tensor | None:
    """IC-LoRA: the ``reference`` video's normalised latents `(1, C, F', H'/s, W'/s)`, read at the sample's frames
    and its size divided by ``reference_downscale`` (s), for a DiT trained with references."""
    if not cfg.get("reference"):
        return None
    scale = int(cfg.get("reference_downscale") or 1)
    if scale < 1 or cfg.height % (32 * scale) or cfg.width % (32 * scale):
        raise ValueError(f"reference_downscale={scale} must divide the sample's latent size "
                         f"{cfg.height // 32} x {cfg.width // 32} (height / 32 x width / 32)")
    video = read_video(cfg.reference, cfg.frames, cfg.height // scale, cfg.width // scale)  # (1, 3, F, H/s, W/s)
    dtype = next(vae.parameters()).dtype
    return vae.normalize_latents(vae.encode(video.to(dtype)).mean).float()


def conditioning_description(cfg: DictConfig) -> str:
    if cfg.get("image") and not any(cfg.get(key) for key in ("last_image", "mask", "outpaint", "video_frames")):
        return "image-to-video"
    given = [name for name, key in (("first frame", "image"), ("last frame", "last_image"), ("inpainting", "mask"),
                                    ("outpainting", "outpaint"), ("video frames", "video_frames")) if cfg.get(key)]
    return f"conditioned ({', '.join(given)})" if given else "text-to-video"


def read_video(path: str | Path, frames: int, height: int, width: int) -> torch.Tensor:
    """The first ``frames`` frames of a video file as `(1, 3, F, H, W)` in [-1, 1], resized and centre-cropped."""
    data = Path(path).read_bytes()
    available = probe_video(data).num_frames
    if available < frames:
        raise ValueError(f"{path} has {available} frames; the sample needs {frames} (frames=)")
    return resize_and_crop(decode_frames(data, list(range(frames))), Bucket(frames, height, width), rng=None)[None]


def read_mask(path: str | Path, height: int, width: int) -> torch.Tensor:
    """A mask image as `(H, W)` bool, true where it is white (kept), resized and centre-cropped like the video."""
    pixels = resize_and_crop(decode_png(Path(path).read_bytes())[None], Bucket(1, height, width), rng=None)
    return pixels[:, 0].mean(dim=0) > 0.0  # (H, W): brighter than mid-grey


def frames_mask(indices: list[int], latent_frames: int, height: int, width: int) -> torch.Tensor:
    """`(1, F', H', W')` bool: the latent frames ``indices`` (negative counts from the end) of the video are
    given: [0, 1] extends forwards (prefix), [-1] backwards (suffix), any set gives keyframes."""
    frames = torch.zeros(1, latent_frames, dtype=torch.bool)
    for index in indices:
        if not -latent_frames <= int(index) < latent_frames:
            raise ValueError(f"video_frames: latent frame {index} is outside the sample's {latent_frames} latent frames")
        frames[0, int(index)] = True
    return frames[:, :, None, None].expand(1, latent_frames, height, width)


def centre_box(height: int, width: int, fraction: float) -> torch.Tensor:
    """`(H, W)` bool: the centred box of ``fraction`` of each side (outpainting keeps it)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"outpaint is the kept centred fraction of each side, in (0, 1); got {fraction!r}")
    rows = ((torch.arange(height) + 0.5) / height - 0.5).abs() < fraction / 2
    columns = ((torch.arange(width) + 0.5) / width - 0.5).abs() < fraction / 2
    return rows[:, None] & columns[None, :]


def read_image(path: str | Path, height: int, width: int) -> torch.Tensor:
    """An image file (or a video's first frame) as `(1, 3, H, W)` in [-1, 1], resized and centre-cropped."""
    data = Path(path).read_bytes()
    pixels = decode_frames(data, [0])[0] if str(path).lower().endswith((".mp4", ".mov", ".mkv", ".webm")) \
        else decode_png(data)
    return resize_and_crop(np.asarray(pixels)[None], Bucket(1, height, width), rng=None)[:, 0][None]


def run(cfg: DictConfig) -> Path:
    checkpoint = latest_checkpoint(cfg.runs_dir) if cfg.checkpoint == "latest" else Path(cfg.checkpoint)
    module = load_dit_module(checkpoint, cfg.use_ema)
    add_sampling_lora(module.transformer, cfg.get("lora"), float(cfg.get("lora_scale", 1.0)))
    check_expected_vae(module.latent_record, checkpoint, cfg.get("vae_checkpoint"), cfg.get("latent_stats"))
    inference = OmegaConf.to_container(module.cfg.model.dit.get("inference") or {}, resolve=True)
    settings = SampleSettings().with_inference_defaults(
        inference, frames=cfg.frames, height=cfg.height, width=cfg.width, fps=cfg.fps, num_steps=cfg.num_steps,
        guidance_scale=cfg.guidance_scale, sampler=cfg.sampler, decode_timestep=cfg.decode_timestep,
        renoise_scale=cfg.renoise_scale, seed=cfg.seed, schedule_shift=cfg.get("schedule_shift"),
        schedule_terminal=cfg.get("schedule_terminal"))
    conditioning = conditioning_from_inputs(module.vae, cfg)
    reference = reference_from_input(module.vae, cfg)
    video = generate(module.transformer, module.vae, module.text_encoder, [cfg.prompt], settings,
                     cfg.negative_prompt, conditioning, reference=reference)[0]
    output = write_video(video, Path(cfg.output), cfg.fps)
    mode = conditioning_description(cfg)
    print(f"{mode} sample from {checkpoint} ({settings.num_steps} steps, guidance {settings.guidance_scale}) -> {output}")
    return output


@hydra.main(config_path=str(CONFIG_DIR), config_name="sample", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
