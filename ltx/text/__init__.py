"""Frozen text encoders (T5, open_clip) turning prompts into per-token embeddings and masks."""

from ltx.text.encoders import OpenClipTextEncoder, T5TextEncoder, TextEncoder, resolve_t5_directories

__all__ = ["OpenClipTextEncoder", "T5TextEncoder", "TextEncoder", "resolve_t5_directories"]
