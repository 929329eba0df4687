"""Latent shards: precomputed VAE latents and text features, so DiT training skips both encoders.

One WebDataset sample per clip: ``{key}.latents.safetensors`` (``latents`` `(C, F', H', W')`, normalised
VAE means; ``text`` `(L, D)`; ``text_mask`` `(L,)`), ``{key}.txt`` (caption) and ``{key}.json`` (the
source sample's metadata plus ``fps`` of the encoded window and ``latent_shape``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ltx.data.datamodule import ShardDataModule
from ltx.data.pipeline import Skip, skip_with_warning
from ltx.data.shards import KEY_PATTERN

LATENT_EXTENSION = "latents.safetensors"


@dataclass
class LatentSample:
    """One precomputed sample for ``ltx.data.shards.write_shard``."""

    key: str
    latents: torch.Tensor  # (C, F', H', W')
    text: torch.Tensor  # (L, D)
    text_mask: torch.Tensor  # (L,)
    caption: str
    metadata: dict[str, Any]
    reference_latents: torch.Tensor | None = None  # (C, F', H'/s, W'/s): an IC-LoRA pair's reference

    def check(self) -> None:
        if not KEY_PATTERN.match(self.key):
            raise ValueError(f"sample key {self.key!r} may hold only letters, digits, '_' and '-' (no dots)")
        if self.latents.ndim != 4 or self.text.ndim != 2 or self.text_mask.shape != self.text.shape[:1]:
            raise ValueError(f"sample {self.key}: latents must be (C, F, H, W), text (L, D), text_mask (L,); got "
                             f"{tuple(self.latents.shape)}, {tuple(self.text.shape)}, {tuple(self.text_mask.shape)}")
        if "fps" not in self.metadata:
            raise ValueError(f"sample {self.key}: metadata needs the fps of the encoded window")

    def record(self) -> dict[str, str | bytes]:
        tensors = {"latents": self.latents.contiguous().cpu(), "text": self.text.contiguous().cpu(),
                   "text_mask": self.text_mask.to(torch.bool).contiguous().cpu()}
        if self.reference_latents is not None:
            tensors["reference_latents"] = self.reference_latents.contiguous().cpu()
        metadata = {**self.metadata, "latent_shape": list(self.latents.shape)}
        return {LATENT_EXTENSION: save_safetensors(tensors), "txt": self.caption, "json": json.dumps(metadata)}


class DecodeLatentSamples:
    """Raw tar samples -> batch items bucketed by latent shape (F', H', W'); unreadable ones -> ``Skip``."""

    def __call__(self, samples: Iterable[dict[str, Any] | Skip]) -> Iterator[dict[str, Any] | Skip]:
        for sample in samples:
            if isinstance(sample, Skip):
                yield sample
                continue
            key, url = sample.get("__key__", ""), sample.get("__url__", "")
            if LATENT_EXTENSION not in sample or "json" not in sample:
                yield skip_with_warning("missing_latents", key, url, f"sample has no .{LATENT_EXTENSION} or .json")
                continue
            try:
                tensors = load_safetensors(sample[LATENT_EXTENSION])
                metadata = json.loads(sample["json"])
                latents = tensors["latents"]
                item = {"key": key, "url": url, "latents": latents, "text": tensors["text"],
                        "text_mask": tensors["text_mask"], "fps": float(metadata["fps"]),
                        "caption": (sample.get("txt") or b"").decode("utf-8"), "bucket": tuple(latents.shape[1:])}
                if "reference_latents" in tensors:
                    item["reference_latents"] = tensors["reference_latents"]  # (C, F', H'/s, W'/s)
                yield item
            except (KeyError, ValueError, RuntimeError, SafetensorError, json.JSONDecodeError) as error:
                yield skip_with_warning("decode_error", key, url, f"{type(error).__name__}: {error}")


class LatentDataModule(ShardDataModule):
    """Batches of precomputed latents: ``latents`` `(B, C, F', H', W')`, ``text`` `(B, L, D)`,
    ``text_mask`` `(B, L)`, ``fps`` `(B,)`, ``caption``, ``key``; one latent shape per batch. Same reading
    modes as ``VideoDataModule`` (see ``ShardDataModule``)."""

    def sample_stages(self, random: bool, rank: int) -> list[Any]:
        return [DecodeLatentSamples()]
