"""The demo report card: ``python -m ltx.cli.report_card DEMO_DIR`` (after ``make demo DEMO_DIR=...``).

Scores what the demo trained, each number against its target (``ltx.evaluation.report_card``):
  - the VAE (``vae_run/checkpoints/last.ckpt``, EMA weights) on the held-out clips of the val shards
    (``val/``), each coded at the scale the demo trains at (``--vae-height``, default the world clips'
    height, aspect ratio kept; the demo sources are stored larger): PSNR and SSIM of the posterior mean
    decoded at t=0, and of the latents noised to t=0.05 (``(1 - t) z + t eps``) decoded by the
    timestep-conditioned decoder told t=0.05;
  - the DiT (``dit_run/checkpoints/last.ckpt``, EMA weights, decoding with the VAE it holds): its last
    ``val/loss`` from ``dit_run/csv/**/metrics.csv``; text-to-video samples of ``--prompts`` held-out
    prompts read back by the demo-world evaluator (colour, shape, motion accuracy); image-to-video from the
    first frames of held-out clips (PSNR of the decoded first frame against the image, and adherence).
Writes ``report_card.json`` (every metric, ``targets_met``), ``report_card.md`` and ``contact_sheet.png``
into DEMO_DIR (or ``--output``) and prints the card. The exit code is 0 whatever the verdicts; missing
inputs are errors.

The image-to-video images are the first frames of the held-out world clips in the val shards (what
``data_pipeline.demo_world`` rendered, through H.264 at crf 18), not renders: ``ltx`` never imports
``data_pipeline`` (tests/test_architecture_rules.py), and the shards are the ground truth this demo dir
holds, whatever world settings made it; their captions give the labels.
"""

from __future__ import annotations

import argparse
import csv
import json
import tarfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from ltx.cli.reconstruct import target_shape
from ltx.cli.sample import load_dit_module
from ltx.data.datamodule import expand_shards
from ltx.data.transforms import resize_and_crop
from ltx.data.video_io import decode_frames, decode_png, probe_video
from ltx.evaluation import HELD_OUT_COMBINATIONS, SceneLabels, held_out_prompts, parse_caption
from ltx.evaluation.contact_sheet import SheetRow, evenly_spaced_frames, row_height, write_contact_sheet
from ltx.evaluation.demo_world import DemoWorldEvaluator, score
from ltx.evaluation.report_card import (
    I2V_FIRST_FRAME_PSNR_TARGET,
    VAE_PSNR_TARGET,
    VAE_SSIM_TARGET,
    Metric,
    adherence_metrics,
    format_table,
    markdown_report,
    targets_met,
)
from ltx.models.vae import VideoAutoencoder
from ltx.shapes import check_video_shape
from ltx.training.adherence import AdherenceResult, sample_videos, score_videos
from ltx.training.build import vae_from_checkpoint
from ltx.training.latent_record import vae_weights_fingerprint
from ltx.training.samples import SampleSettings
from ltx.training.vae_module import noise_latents


@dataclass(frozen=True)
class HeldOutClip:
    """One sample of the val shards: its media (mp4 or png bytes) and caption."""

    key: str
    caption: str
    media: bytes
    extension: str

    @property
    def labels(self) -> SceneLabels | None:
        """The (colour, shape, motion) of a held-out world clip's caption; None for any other clip."""
        try:
            labels = parse_caption(self.caption)
        except ValueError:
            return None
        return labels if (labels.colour, labels.shape, labels.motion) in HELD_OUT_COMBINATIONS else None

    def video(self, max_frames: int, size: tuple[int, int] | None = None, height: int | None = None) -> torch.Tensor:
        """`(3, F, H, W)` in [-1, 1]: the longest 8k+1 frames up to ``max_frames`` (1 for an image), the
        largest multiples of 32 that fit, or ``size`` (H, W), or ``height`` with the width that keeps the
        aspect ratio (``training_scale_size``), resized and centre-cropped."""
        if self.extension == "png":
            frames = decode_png(self.media)[None]  # (1, h, w, 3)
        else:
            info = probe_video(self.media)
            count = min(max_frames, 1 + 8 * ((info.num_frames - 1) // 8))
            frames = decode_frames(self.media, list(range(count)))  # (F, h, w, 3)
        if size is None and height is not None:
            size = training_scale_size(frames.shape[1], frames.shape[2], height)
        shape = target_shape(len(frames), frames.shape[1], frames.shape[2], len(frames), size)
        return resize_and_crop(frames, shape, rng=None)


def training_scale_size(height: int, width: int, target_height: int) -> tuple[int, int]:
    """``(target_height, W)``: the clip scaled to the height the demo trains at, ``W`` the multiple of 32
    nearest the clip's aspect ratio (at least 32); ``resize_and_crop`` then crops what is left over."""
    return target_height, max(32, 32 * round(width * target_height / height / 32))


def read_clips(shards: str | Path) -> list[HeldOutClip]:
    """Every sample of the shards (a directory, glob or brace pattern), in shard and tar order."""
    clips = []
    for shard in expand_shards(str(shards)):
        members: dict[str, dict[str, bytes]] = defaultdict(dict)
        with tarfile.open(shard) as tar:
            for member in tar:
                key, _, extension = member.name.partition(".")
                if member.isfile():
                    members[key][extension] = tar.extractfile(member).read()
        for key, files in members.items():
            extension = "mp4" if "mp4" in files else "png" if "png" in files else None
            if extension is not None:
                clips.append(HeldOutClip(key, files.get("txt", b"").decode().strip(), files[extension], extension))
    return clips


def _quality(reconstruction: torch.Tensor, original: torch.Tensor) -> tuple[float, float]:
    """PSNR and SSIM (data range [0, 1]) of `(3, F, H, W)` videos in [-1, 1], over their frames."""
    frames = [((video.float().clamp(-1, 1) + 1) / 2).transpose(0, 1) for video in (reconstruction, original)]
    return (peak_signal_noise_ratio(*frames, data_range=1.0).item(),
            structural_similarity_index_measure(*frames, data_range=1.0).item())  # frames: (F, 3, H, W)


def batches_by_shape(shapes: Sequence[tuple[int, ...]], batch_size: int) -> list[list[int]]:
    """Indices of ``shapes`` grouped by equal shape (first-seen order), ``batch_size`` at a time."""
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, shape in enumerate(shapes):
        by_shape[shape].append(index)
    return [indices[start : start + batch_size] for indices in by_shape.values()
            for start in range(0, len(indices), batch_size)]


def decode_noised(vae: VideoAutoencoder, mean: torch.Tensor, noise_timestep: float, generator: torch.Generator,
                  decoder_generator: torch.Generator) -> torch.Tensor:
    """``mean`` `(B, C, F', H', W')` noised to ``noise_timestep`` (``(1 - t) z + t eps``, eps drawn on the CPU
    from ``generator``) and decoded by the timestep-conditioned decoder told t: `(B, 3, F, H, W)`."""
    epsilon = torch.randn(mean.shape, generator=generator).to(mean)
    timestep = torch.full((mean.shape[0],), noise_timestep, device=mean.device)
    return vae.decode(noise_latents(mean, timestep, epsilon), noise_timestep, decoder_generator)


@torch.no_grad()
def vae_reconstructions(vae: VideoAutoencoder, clips: list[HeldOutClip], max_frames: int, noise_timestep: float,
                        batch_size: int, seed: int, keep: int,
                        evaluator: DemoWorldEvaluator | None = None, height: int | None = None,
                        ) -> tuple[list[dict], list[tuple[str, torch.Tensor, torch.Tensor]]]:
    """Per clip: PSNR / SSIM of the posterior mean decoded at t=0 and, with timestep conditioning, of the
    mean noised to ``noise_timestep`` decoded at it; with an ``evaluator``, also what it reads in the t=0
    reconstruction of each clip whose caption states its labels (``read``: a ``Prediction``, ``labels``).
    Also (key, original, reconstruction) of the first ``keep`` clips. Clips of one shape are batched. Each
    clip is coded at ``height`` (its aspect ratio kept, ``training_scale_size``), or at its own size (None)."""
    device = next(vae.parameters()).device
    generator = torch.Generator().manual_seed(seed)  # the latent noise, drawn on the CPU
    decoder_generator = torch.Generator(device).manual_seed(seed)  # the decoder's noise injection, on its device
    videos = [clip.video(max_frames, height=height) for clip in clips]
    rows, examples = [None] * len(clips), {}
    for chunk in batches_by_shape([tuple(video.shape) for video in videos], batch_size):
        batch = torch.stack([videos[index] for index in chunk]).to(device)  # (B, 3, F, H, W)
        mean = vae.encode(batch).mean  # (B, C, F', H', W')
        clean = vae.decode(mean, 0.0 if vae.config.timestep_conditioning else None, decoder_generator).cpu()
        noisy = None
        if vae.config.timestep_conditioning:
            noisy = decode_noised(vae, mean, noise_timestep, generator, decoder_generator).cpu()
        for position, index in enumerate(chunk):
            psnr, ssim = _quality(clean[position], videos[index])
            row = {"key": clips[index].key, "shape": list(videos[index].shape[1:]), "psnr_t0": psnr, "ssim_t0": ssim}
            labels = caption_labels(clips[index].caption)
            if evaluator is not None and labels is not None:
                row["read"], row["labels"] = evaluator.predict(clean[position]), labels
            if noisy is not None:
                row["psnr_noisy"], row["ssim_noisy"] = _quality(noisy[position], videos[index])
            rows[index] = row
            if index < keep:
                examples[index] = (clips[index].key, videos[index], clean[position])
    return rows, [examples[index] for index in sorted(examples)]


@dataclass
class Section:
    """One part of the card: its metrics, contact sheet rows and JSON fields."""

    metrics: list[Metric]
    rows: list[SheetRow] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def vae_metrics(rows: list[dict], noise_timestep: float, timestep_conditioned: bool) -> list[Metric]:
    """Mean PSNR / SSIM over the clips of ``vae_reconstructions``, at t=0 and noised (N/A without timestep
    conditioning)."""
    count = len(rows)
    note = "" if timestep_conditioned else "the VAE has no timestep conditioning: it cannot decode noisy latents"
    metrics = []
    for setting, what, key in (("t0", "posterior mean decoded at t=0", "t0"),
                               (f"t{noise_timestep:g}", f"latents noised to t={noise_timestep:g} decoded at "
                                                        f"t={noise_timestep:g}", "noisy")):
        for name, target, unit in (("psnr", VAE_PSNR_TARGET, "dB"), ("ssim", VAE_SSIM_TARGET, "")):
            measured = key == "t0" or timestep_conditioned
            value = float(np.mean([row[f"{name}_{key}"] for row in rows])) if measured else None
            metrics.append(Metric(f"vae/{name}_{setting}", f"VAE {name.upper()}, {what} ({count} held-out clips)",
                                  value, unit, target, "" if measured else note))
    return metrics


def caption_labels(caption: str) -> SceneLabels | None:
    """The labels a single-shot world caption states; None for any other clip (e.g. a multi-shot source)."""
    try:
        return parse_caption(caption)
    except ValueError:
        return None


def reconstruction_adherence(rows: list[dict]) -> list[Metric]:
    """What the evaluator reads in the VAE's reconstructions of the held-out world clips: the most any DiT
    whose samples this VAE decodes can score (information, no target)."""
    read = [row for row in rows if "read" in row]
    scores = score([row["read"] for row in read], [row["labels"] for row in read]) if read else None
    return adherence_metrics("vae_read", "Evaluator on VAE reconstructions (ceiling for the DiT)", scores, len(read),
                             "" if read else "no held-out clip has a single-shot world caption", targets=False)


def vae_section(args: argparse.Namespace, vae: VideoAutoencoder, clips: list[HeldOutClip], height: int | None) -> Section:
    rows, examples = vae_reconstructions(vae, clips, args.vae_frames, args.vae_noise_timestep, args.batch_size,
                                         args.seed, args.sheet_reconstructions, DemoWorldEvaluator(), height)
    sheet = [SheetRow(f"VAE reconstruction of held-out clip {key} (original | decoded at t=0)",
                      [evenly_spaced_frames(original, args.sheet_frames),
                       evenly_spaced_frames(reconstruction, args.sheet_frames)])
             for key, original, reconstruction in examples]
    metrics = vae_metrics(rows, args.vae_noise_timestep, vae.config.timestep_conditioning) + reconstruction_adherence(rows)
    records = [{key: value for key, value in row.items() if key not in ("read", "labels")} for row in rows]
    for record, row in zip(records, rows, strict=True):
        if "read" in row:
            record["read"] = {"colour": row["read"].colour, "shape": row["read"].shape, "motion": row["read"].motion}
    return Section(metrics, sheet, {"vae_clips": records})


def last_validation_loss(run_dir: Path) -> tuple[float, int, str] | None:
    """The ``val/loss`` of the highest step in ``run_dir/csv/**/metrics.csv`` (the newer file, then the
    later row wins a tie), its step and file; None when there is none."""
    best = None
    files = sorted(Path(run_dir).glob("csv/**/metrics.csv"), key=lambda path: path.stat().st_mtime)
    for order, path in enumerate(files):
        with open(path) as handle:
            for row_index, row in enumerate(csv.DictReader(handle)):
                if row.get("val/loss"):
                    candidate = (int(row["step"]), order, row_index, float(row["val/loss"]), str(path))
                    best = candidate if best is None or candidate[:3] > best[:3] else best
    return None if best is None else (best[3], best[0], best[4])


def validation_loss_section(dit_run: Path) -> Section:
    loss = last_validation_loss(dit_run)
    metric = Metric("dit/val_loss", "DiT validation loss (last val/loss, lower is better)",
                    None if loss is None else loss[0], note="" if loss else f"no val/loss in {dit_run}/csv/**/metrics.csv")
    details = None if loss is None else {"value": loss[0], "step": loss[1], "metrics_file": loss[2]}
    return Section([metric], report={"dit_val_loss": details})


def first_frame_psnr(videos: torch.Tensor, images: torch.Tensor) -> list[float]:
    """PSNR (data range [0, 1]) of each video's first frame `(N, 3, F, H, W)` against its image `(N, 3, H, W)`."""
    return [peak_signal_noise_ratio((video[:, 0].clamp(-1, 1) + 1) / 2, (image.clamp(-1, 1) + 1) / 2,
                                    data_range=1.0).item() for video, image in zip(videos, images)]


def _read_label(result: AdherenceResult, index: int) -> str:
    prediction, correct = result.predictions[index], result.correct(index)
    marks = ", ".join(f"{name} {'ok' if right else 'WRONG'}" for name, right in correct.items())
    read = " / ".join(str(getattr(prediction, name)) for name in correct)
    return f"read: {read} ({marks})"


def _sample_record(result: AdherenceResult, index: int, caption: str, **extra) -> dict:
    prediction = result.predictions[index]
    return {"prompt": caption, "expected": asdict(result.labels[index]),
            "predicted": {"found": prediction.found, **asdict(prediction.labels)}, "correct": result.correct(index),
            **extra}


def text_to_video_section(args: argparse.Namespace, models: tuple, settings: SampleSettings) -> Section:
    prompts = held_out_prompts(args.prompts)
    videos = sample_videos(*models, [prompt.caption for prompt in prompts], settings, args.batch_size)
    result = score_videos(videos, prompts)
    sheet = [SheetRow(f"t2v {index}: {prompt.caption}\n{_read_label(result, index)}",
                      [evenly_spaced_frames(videos[index], args.sheet_frames)]) for index, prompt in enumerate(prompts)]
    records = [_sample_record(result, index, prompt.caption) for index, prompt in enumerate(prompts)]
    return Section(adherence_metrics("t2v", "Text-to-video", result.scores, len(prompts)), sheet,
                   {"t2v_samples": records})


def image_to_video_section(args: argparse.Namespace, models: tuple, settings: SampleSettings,
                           clips: list[HeldOutClip], source: Path) -> Section:
    """Image-to-video from the first frames of the first ``--i2v-prompts`` held-out world clips."""
    clips = [clip for clip in clips if clip.labels is not None][: args.i2v_prompts]
    if not clips:
        note = f"no held-out world clips in {source}"
        metric = Metric("i2v/first_frame_psnr", "Image-to-video: decoded first frame vs the image (0 samples)", None,
                        "dB", I2V_FIRST_FRAME_PSNR_TARGET, note)
        return Section([metric, *adherence_metrics("i2v", "Image-to-video", None, 0, note)], report={"i2v_samples": []})
    images = torch.stack([clip.video(1, (settings.height, settings.width))[:, 0] for clip in clips])  # (N, 3, H, W)
    videos = sample_videos(*models, [clip.caption for clip in clips], settings, args.batch_size, images=images,
                           image_noise_scale=args.image_noise_scale)
    result, psnr = score_videos(videos, [clip.labels for clip in clips]), first_frame_psnr(videos, images)
    metric = Metric("i2v/first_frame_psnr", f"Image-to-video: decoded first frame vs the image ({len(clips)} samples)",
                    float(np.mean(psnr)), "dB", I2V_FIRST_FRAME_PSNR_TARGET)
    sheet = [SheetRow(f"i2v {index} (image | video; first frame {psnr[index]:.2f} dB): {clip.caption}\n"
                      f"{_read_label(result, index)}", [evenly_spaced_frames(images[index][:, None], 1),
                                                       evenly_spaced_frames(videos[index], args.sheet_frames)])
             for index, clip in enumerate(clips)]
    records = [_sample_record(result, index, clip.caption, key=clip.key, first_frame_psnr=psnr[index])
               for index, clip in enumerate(clips)]
    return Section([metric, *adherence_metrics("i2v", "Image-to-video", result.scores, len(clips))], sheet,
                   {"i2v_samples": records})


def sample_settings(args: argparse.Namespace, demo_dir: Path) -> SampleSettings:
    """Frames, size and fps default to the world's clips (``world.json``), else ``SampleSettings``'."""
    manifest = demo_dir / "world.json"
    world = json.loads(manifest.read_text()).get("settings", {}) if manifest.exists() else {}
    defaults = SampleSettings()
    pick = {name: getattr(args, name) if getattr(args, name) is not None else world.get(name, getattr(defaults, name))
            for name in ("frames", "height", "width")}
    return SampleSettings(**pick, fps=float(world.get("fps", defaults.fps)), num_steps=args.num_steps,
                          guidance_scale=args.guidance_scale, seed=args.seed)


def input_paths(args: argparse.Namespace) -> dict[str, Path]:
    """The checkpoints and val shards, by default under the demo dir; SystemExit naming a missing one."""
    demo_dir = Path(args.demo_dir)
    paths = {"vae_checkpoint": args.vae_checkpoint or demo_dir / "vae_run" / "checkpoints" / "last.ckpt",
             "dit_checkpoint": args.dit_checkpoint or demo_dir / "dit_run" / "checkpoints" / "last.ckpt",
             "val_shards": args.val_shards or demo_dir / "val"}
    for name, path in paths.items():
        if not Path(path).exists():
            raise SystemExit(f"report card: no {name.replace('_', ' ')} at {path}; run `make demo DEMO_DIR={demo_dir}` "
                             f"first, or pass --{name.replace('_', '-')}")
    return {name: Path(path) for name, path in paths.items()}


def build_report(args: argparse.Namespace) -> tuple[dict, list[Metric], list[SheetRow]]:
    """Every measurement; returns the JSON report, the metrics and the contact sheet's rows."""
    paths = input_paths(args)
    settings = sample_settings(args, Path(args.demo_dir))
    clips = read_clips(paths["val_shards"])
    if not clips:
        raise SystemExit(f"report card: the val shards at {paths['val_shards']} hold no samples")
    vae = vae_from_checkpoint(paths["vae_checkpoint"], use_ema=not args.no_ema).to(args.device).eval()
    module = load_dit_module(paths["dit_checkpoint"], use_ema=not args.no_ema).to(args.device)
    models = (module.transformer, module.vae, module.text_encoder)
    vae_height = settings.height if args.vae_height is None else (args.vae_height or None)
    sections = [vae_section(args, vae, clips, vae_height),
                validation_loss_section(Path(args.dit_run or paths["dit_checkpoint"].parents[1])),
                text_to_video_section(args, models, settings),
                image_to_video_section(args, models, settings, clips, paths["val_shards"])]
    metrics = [metric for section in sections for metric in section.metrics]
    report = {
        "demo_dir": str(args.demo_dir), **{name: str(path) for name, path in paths.items()},
        "dit_decodes_with_this_vae": module.latent_record.vae_fingerprint == vae_weights_fingerprint(vae),
        "settings": {**asdict(settings), "prompts": args.prompts, "i2v_prompts": args.i2v_prompts,
                     "image_noise_scale": args.image_noise_scale, "vae_frames": args.vae_frames,
                     "vae_height": vae_height,
                     "vae_noise_timestep": args.vae_noise_timestep, "use_ema": not args.no_ema, "device": args.device},
        "metrics": {metric.name: metric.to_dict() for metric in metrics},
        "targets_met": targets_met(metrics),
    }
    for section in sections:
        report.update(section.report)
    report["all_targets_met"] = all(report["targets_met"].values())
    # the contact sheet: text-to-video, image-to-video, then VAE rows
    rows = sections[2].rows + sections[3].rows + sections[0].rows
    return report, metrics, rows


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    output = Path(args.output or args.demo_dir)
    report, metrics, rows = build_report(args)
    sheet = write_contact_sheet(rows, output / "contact_sheet.png", tile_height=args.sheet_tile)
    report["contact_sheet"] = {"path": str(sheet), "rows": len(rows), "row_height": row_height(args.sheet_tile)}
    report["seconds"] = time.perf_counter() - start
    output.mkdir(parents=True, exist_ok=True)
    (output / "report_card.json").write_text(json.dumps(report, indent=2) + "\n")
    (output / "report_card.md").write_text(markdown_report(report, metrics))
    met = sum(report["targets_met"].values())
    print(f"demo report card for {args.demo_dir} ({report['seconds']:.1f} s): {met} of {len(report['targets_met'])} "
          f"targets met\n{format_table(metrics)}\n  contact sheet: {sheet} ({len(rows)} rows); report: "
          f"{output / 'report_card.json'}, {output / 'report_card.md'}")
    return report


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo_dir", type=Path, help="the demo dir (make demo DEMO_DIR=...)")
    parser.add_argument("--output", type=Path, help="where the report files go (default: the demo dir)")
    parser.add_argument("--vae-checkpoint", type=Path, help="default DEMO_DIR/vae_run/checkpoints/last.ckpt")
    parser.add_argument("--dit-checkpoint", type=Path, help="default DEMO_DIR/dit_run/checkpoints/last.ckpt")
    parser.add_argument("--dit-run", type=Path, help="the DiT run dir with csv/ (default: the checkpoint's run)")
    parser.add_argument("--val-shards", type=Path, help="held-out clips (default DEMO_DIR/val)")
    parser.add_argument("--prompts", type=_positive, default=24, help="held-out prompts sampled text-to-video")
    parser.add_argument("--i2v-prompts", type=_positive, default=4, help="held-out clips sampled image-to-video")
    parser.add_argument("--frames", type=_positive, help="sample frames, 8k+1 (default: the world's clips, world.json)")
    parser.add_argument("--height", type=_positive, help="sample height, multiple of 32 (default: the world's)")
    parser.add_argument("--width", type=_positive, help="sample width, multiple of 32 (default: the world's)")
    parser.add_argument("--num-steps", type=_positive, default=10, help="sampling steps (the demo samples with 10)")
    parser.add_argument("--guidance-scale", type=float, default=3.0, help="classifier-free guidance scale (>= 1)")
    parser.add_argument("--image-noise-scale", type=float, default=0.15, help="image conditioning noise (release: 0.15)")
    parser.add_argument("--batch-size", type=_positive, default=8, help="prompts (clips) per sampling (VAE) batch")
    parser.add_argument("--vae-frames", type=_positive, default=17, help="frames of each held-out clip the VAE codes")
    parser.add_argument("--vae-height", type=int, help="height (multiple of 32) each held-out clip is coded at, its "
                        "aspect ratio kept: default the world clips' (the scale the demo trains at); 0 = each clip's "
                        "own size")
    parser.add_argument("--vae-noise-timestep", type=float, default=0.05, help="the noisy-latent decoder timestep")
    parser.add_argument("--sheet-frames", type=_positive, default=5, help="frames per sample on the contact sheet")
    parser.add_argument("--sheet-reconstructions", type=int, default=3, help="VAE reconstructions on the sheet")
    parser.add_argument("--sheet-tile", type=_positive, default=64, help="contact sheet frame height in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ema", action="store_true", help="the trained weights, not the EMA ones")
    parser.add_argument("--device", default="cpu", help="where the models run (the demo's are CPU-sized)")
    args = parser.parse_args(argv)
    try:  # unset ones come from world.json (sampling checks the result)
        check_video_shape(args.frames or 1, args.height or 32, args.width or 32, what="--frames/--height/--width")
        check_video_shape(args.vae_frames, 32, 32, what="--vae-frames")
    except ValueError as error:
        parser.error(str(error))
    if not args.guidance_scale >= 1.0:
        parser.error(f"--guidance-scale must be >= 1 (1: no guidance), got {args.guidance_scale}")
    if args.vae_height is not None and (args.vae_height < 0 or args.vae_height % 32):
        parser.error(f"--vae-height must be a multiple of 32 (0: each clip's own size), got {args.vae_height}")
    if not 0.0 < args.vae_noise_timestep <= 1.0:
        parser.error(f"--vae-noise-timestep must be in (0, 1], got {args.vae_noise_timestep}")
    if args.sheet_reconstructions < 0:
        parser.error(f"--sheet-reconstructions must be >= 0, got {args.sheet_reconstructions}")
    return args


def main(argv: list[str] | None = None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
