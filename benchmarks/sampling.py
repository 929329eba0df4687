"""End-to-end text-to-video sampling: ours (``ltx.training.samples.generate``) against diffusers'
``LTXPipeline``, with the same tiny random weights, prompt, size, steps, guidance and decode settings.

Both sides load one exported pipeline directory (tiny T5, VAE and DiT) and do the same work: two T5
passes (prompt and empty negative prompt), ``steps`` transformer passes on a CFG-doubled batch, the
re-noised denoising decode. Our initial noise and re-noising come from the same seeded CPU generator
stream as diffusers'; diffusers draws the decoder's injected noise from the global RNG, which the
value check syncs to our generator's state, so the decoded videos are compared value by value.

    python -m benchmarks.sampling        # quick mode, rows as JSON
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from benchmarks.harness import Row, comparison, interleave
from ltx.interop.diffusers import export_pipeline, load_transformer, load_vae
from ltx.models.dit import VideoTransformer, dit_config
from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.registry import TEXT_ENCODERS
from ltx.shapes import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION
from ltx.text.tiny import write_tiny_t5
from ltx.training.samples import SampleSettings, generate

SECTION = "sampling"
TARGET = 1.2
PROMPT = "a red car drives on the beach at sunset"
WORDS = PROMPT.split() + "a the of in on with camera pans slowly cat dog city forest river".split()
MAX_LENGTH = 128  # the release's text length, on both sides
SEED = 0


@dataclass(frozen=True)
class Case:
    """What one benchmark row samples."""

    frames: int
    height: int
    width: int
    steps: int
    repeats: int

    def settings(self) -> SampleSettings:
        """Our sampler settings (the release's guidance and decode defaults)."""
        return replace(SampleSettings(), frames=self.frames, height=self.height, width=self.width,
                       num_steps=self.steps, seed=SEED)


QUICK = Case(frames=9, height=64, width=64, steps=4, repeats=2)
FULL = Case(frames=25, height=128, width=128, steps=10, repeats=3)


def randomized_models(seed: int = SEED) -> tuple[VideoAutoencoder, VideoTransformer]:
    """Tiny VAE and DiT with every >= 2-d weight drawn from N(0, 0.02): no zero-initialised output layers."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae, transformer = VideoAutoencoder(vae_config("tiny")), VideoTransformer(dit_config("tiny"))
        with torch.no_grad():
            for parameter in [*vae.parameters(), *transformer.parameters()]:
                if parameter.ndim >= 2:
                    parameter.normal_(0.0, 0.02)
    return vae, transformer


def write_pipeline(root: Path) -> Path:
    """An ``LTXPipeline`` directory under ``root``: tiny T5, randomised tiny VAE and DiT (all local)."""
    t5 = write_tiny_t5(root / "t5", WORDS, dim=dit_config("tiny").caption_channels, seed=SEED)
    vae, transformer = randomized_models()
    return export_pipeline(vae, transformer, t5 / "text_encoder", t5 / "tokenizer", root / "pipeline")


def our_sampler(directory: Path, case: Case) -> Callable[[], torch.Tensor]:
    """Our models loaded from ``directory``; the callable returns videos `(B, 3, F, H, W)` in [-1, 1]."""
    vae, transformer = load_vae(directory / "vae").eval(), load_transformer(directory / "transformer").eval()
    # diffusers' LTXPipeline runs T5 without a padding mask; attend_to_padding=True matches it
    text_encoder = TEXT_ENCODERS.build("t5", path=directory, max_length=MAX_LENGTH, attend_to_padding=True)
    settings = case.settings()

    def sample() -> torch.Tensor:
        with torch.no_grad():
            return generate(transformer, vae, text_encoder, [PROMPT], settings)

    return sample


def reference_sampler(directory: Path, case: Case) -> Callable[[], torch.Tensor]:
    """diffusers' ``LTXPipeline`` on ``directory``; the callable returns videos `(B, F, 3, H, W)` in [0, 1]."""
    from diffusers import LTXPipeline
    from diffusers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # no accelerate advice, no loading progress bar
    logging.disable_progress_bar()
    try:
        pipeline = LTXPipeline.from_pretrained(str(directory), local_files_only=True)
    finally:
        logging.set_verbosity(verbosity)
        logging.enable_progress_bar()
    pipeline.set_progress_bar_config(disable=True)
    settings = case.settings()

    return lambda: pipeline_frames(pipeline, settings)


def pipeline_frames(pipeline, settings: SampleSettings) -> torch.Tensor:
    """``LTXPipeline`` with our sampler's ``settings``, ``PROMPT``, an empty negative prompt and the release's
    text length: frames `(B, F, 3, H, W)` in [0, 1]."""
    with torch.no_grad():
        return pipeline(
            prompt=PROMPT, negative_prompt="", num_frames=settings.frames, height=settings.height,
            width=settings.width, frame_rate=int(settings.fps), num_inference_steps=settings.num_steps,
            guidance_scale=settings.guidance_scale, decode_timestep=settings.decode_timestep,
            decode_noise_scale=settings.renoise_scale, generator=torch.Generator().manual_seed(settings.seed),
            output_type="pt", max_sequence_length=MAX_LENGTH,
        ).frames


def sync_global_rng_to_decoder(case: Case) -> None:
    """Put the global RNG where our generator stands when the decoder starts (after the initial noise and
    the re-noising draws), since diffusers' VAE draws its injected noise from the global RNG."""
    generator = torch.Generator().manual_seed(SEED)
    latent_shape = (1, dit_config("tiny").in_channels, 1 + (case.frames - 1) // TEMPORAL_COMPRESSION,
                    case.height // SPATIAL_COMPRESSION, case.width // SPATIAL_COMPRESSION)
    for _ in range(2):  # initial noise, then the decode re-noising (same shape)
        torch.randn(latent_shape, generator=generator)
    torch.set_rng_state(generator.get_state())


def compare_outputs(ours: Callable[[], torch.Tensor], reference: Callable[[], torch.Tensor],
                    case: Case) -> dict[str, object]:
    """Shapes of both videos (ours as `(B, 3, F, H, W)`) and the max abs pixel difference in [-1, 1]."""
    mine = ours()
    with torch.random.fork_rng(devices=[]):
        sync_global_rng_to_decoder(case)
        theirs = reference().permute(0, 2, 1, 3, 4) * 2.0 - 1.0  # (B, F, 3, H, W) [0, 1] -> (B, 3, F, H, W)
    same_shape = tuple(mine.shape) == tuple(theirs.shape)
    return {"our_shape": list(mine.shape), "reference_shape": list(theirs.shape), "same_shape": same_shape,
            "max_abs_diff": float((mine - theirs).abs().max()) if same_shape else None,
            "video_std": float(mine.std())}


def measure(case: Case, label: str) -> Row:
    """One row: interleaved timings of both samplers on ``case``, plus the output check."""
    with tempfile.TemporaryDirectory(prefix="bench-sampling-") as root:
        directory = write_pipeline(Path(root))
        ours, reference = our_sampler(directory, case), reference_sampler(directory, case)
        check = compare_outputs(ours, reference, case)
        times = interleave({"ours": ours, "reference": reference}, repeats=case.repeats, warmup=1)
    row = comparison(SECTION, label, times["ours"], times["reference"], target=TARGET, work=1, unit="videos",
                     frames=case.frames, height=case.height, width=case.width, steps=case.steps,
                     guidance_scale=SampleSettings.guidance_scale, transformer_passes=case.steps, batch_per_pass=2,
                     threads=torch.get_num_threads(), **check)
    row.notes = ("tiny random weights (VAE, DiT, T5); CFG doubles the batch on both sides; same seed and "
                 "noise draws (diffusers' decoder noise via the synced global RNG)")
    return row


def run(quick: bool) -> list[Row]:
    """The sampling section: one row, quick or full size."""
    case = QUICK if quick else FULL
    label = f"LTXPipeline text-to-video {case.frames}x{case.height}x{case.width}, {case.steps} steps"
    return [measure(case, label)]


if __name__ == "__main__":
    print(json.dumps([row.as_dict() for row in run(quick=True)], indent=2))
