"""Tiny text encoders built locally for tests: a T5 in the diffusers pipeline layout, an open_clip config."""

from __future__ import annotations

import json
from pathlib import Path

from ltx.text.tiny import write_tiny_t5

# A few dozen words; anything else becomes <unk>. Ids: <pad> 0, </s> 1, <unk> 2, then these words.
TINY_T5_WORDS = (
    "a an the of in on over under and with at by to from slowly quickly camera pans zooms tracks "
    "cat dog bird horse car boat city beach forest mountain river sunset night rain snow red blue "
    "green golden white black runs jumps flies walks drives sails video shot close up wide"
).split()
TINY_T5_DIM = 32


def make_tiny_t5(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny T5 encoder (d_model 32) and tokenizer as ``text_encoder/`` and ``tokenizer/``.

    The layout of a diffusers pipeline directory (what LTXPipeline.from_pretrained reads); returns
    ``directory``. Weights are deterministic for a given ``seed`` and the global RNG is left untouched.
    """
    return write_tiny_t5(directory, TINY_T5_WORDS, dim=TINY_T5_DIM, seed=seed)


TINY_OPEN_CLIP_NAME = "ltx-test-tiny-clip"


def register_tiny_open_clip(directory: str | Path) -> str:
    """Register a tiny open_clip config (text tower: width 32, 2 layers, 77 tokens); returns its name.

    77 tokens and a 49,408-token vocabulary fit open_clip's bundled CLIP BPE tokenizer.
    """
    import open_clip

    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    path = Path(directory) / f"{TINY_OPEN_CLIP_NAME}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    if TINY_OPEN_CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(path)
    return TINY_OPEN_CLIP_NAME
