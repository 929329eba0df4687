"""Frozen text encoders, registered by name in ``ltx.registry.TEXT_ENCODERS``; weights are local only.

Every encoder maps ``encode(prompts) -> (embeddings (B, L, D), mask (B, L) bool)`` with ``L`` the fixed
``max_length`` (prompts are padded to it) and ``D`` the ``output_dim``. Encoders never train: their
parameters need no gradients and they stay in eval mode even when a parent module calls ``.train()``.
``transformers`` and ``open_clip`` are imported only when an encoder is built.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import nn

from ltx.registry import TEXT_ENCODERS

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A torch dtype from a config name ("bfloat16", "bf16", ...); None keeps the default."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid names: {', '.join(DTYPES)}")
    return DTYPES[dtype]


class TextEncoder(nn.Module, ABC):
    """A frozen prompt encoder: ``encode(prompts) -> (embeddings (B, L, D), mask (B, L) bool)``."""

    output_dim: int
    max_length: int

    @abstractmethod
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings ``(B, max_length, output_dim)`` and a bool mask of real tokens ``(B, max_length)``."""

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(prompts)

    @property
    def device(self) -> torch.device:
        """The device of the encoder's weights (inputs are moved there)."""
        for tensor in self.parameters():
            return tensor.device
        return torch.device("cpu")

    def train(self, mode: bool = True) -> TextEncoder:
        """Stay in eval mode (no dropout) whatever ``mode``: the encoder is frozen."""
        return super().train(False)

    def freeze(self) -> None:
        """No gradients, eval mode."""
        self.requires_grad_(False)
        self.eval()


def check_prompts(prompts: list[str]) -> list[str]:
    """The prompts as a list of strings, or a clear error."""
    if isinstance(prompts, str):
        raise TypeError(f"encode takes a list of prompts, got the single string {prompts!r}; wrap it in a list")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("encode needs at least one prompt")
    wrong = [type(prompt).__name__ for prompt in prompts if not isinstance(prompt, str)]
    if wrong:
        raise TypeError(f"prompts must be strings, got {', '.join(sorted(set(wrong)))}")
    return prompts


def _has_tokenizer_files(directory: Path) -> bool:
    return directory.is_dir() and any((directory / name).is_file() for name in TOKENIZER_FILES)


def resolve_t5_directories(path: str | os.PathLike, tokenizer_path: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(model directory, tokenizer directory)`` for a local T5, in either supported layout.

    Layouts: a diffusers pipeline directory holding ``text_encoder/`` and ``tokenizer/`` (as the
    LTX-Video release does); a directory holding both the model and the tokenizer files; or the
    ``text_encoder/`` folder itself, whose sibling ``tokenizer/`` is found. ``tokenizer_path`` overrides
    where the tokenizer is read from.
    """
    how_to = (
        "Download the release's text_encoder/ and tokenizer/ folders (e.g. from Lightricks/LTX-Video, a "
        "diffusers pipeline layout) and point `path` at the folder holding them, or at text_encoder/ "
        "with `tokenizer_path` at tokenizer/."
    )
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"T5 text encoder path {str(root)!r} does not exist or is not a directory. {how_to}")
    model_dir = root / "text_encoder" if (root / "text_encoder").is_dir() else root
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no T5 config.json in {str(model_dir)!r} (looked for the model there). {how_to}")
    if tokenizer_path is not None:
        tokenizer_dir = Path(tokenizer_path).expanduser()
    elif (root / "tokenizer").is_dir():
        tokenizer_dir = root / "tokenizer"
    elif not _has_tokenizer_files(model_dir) and (model_dir.parent / "tokenizer").is_dir():
        tokenizer_dir = model_dir.parent / "tokenizer"
    else:
        tokenizer_dir = model_dir
    if not _has_tokenizer_files(tokenizer_dir):
        raise FileNotFoundError(
            f"no tokenizer files ({', '.join(TOKENIZER_FILES)}) in {str(tokenizer_dir)!r}. {how_to}"
        )
    return model_dir, tokenizer_dir


@TEXT_ENCODERS.register("t5")
class T5TextEncoder(TextEncoder):
    """T5 encoder from a local directory (the release: T5-XXL v1.1, 4096 dims, 128 tokens).

    Args:
        path: a diffusers pipeline directory (``text_encoder/`` + ``tokenizer/``), a directory with
            both model and tokenizer, or the ``text_encoder/`` folder; see ``resolve_t5_directories``.
        tokenizer_path: the tokenizer folder, when it is elsewhere.
        max_length: prompts are padded/truncated to this many tokens (128 in the release).
        dtype: weights' dtype ("bfloat16" is the usual choice for T5-XXL; float16 overflows in T5).
        attend_to_padding: False (default) passes the padding mask to T5, as the original LTX-Video
            pipeline does; True lets T5 attend to padding, as diffusers' ``LTXPipeline`` does. Real
            tokens' embeddings differ slightly between the two; the returned mask is the same.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        tokenizer_path: str | os.PathLike | None = None,
        max_length: int = 128,
        dtype: str | torch.dtype | None = None,
        attend_to_padding: bool = False,
    ):
        super().__init__()
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length!r}")
        model_dir, tokenizer_dir = resolve_t5_directories(path, tokenizer_path)
        if not (tokenizer_dir / "tokenizer.json").is_file() and (tokenizer_dir / "spiece.model").is_file():
            try:
                import sentencepiece  # noqa: F401
            except ImportError:
                raise ImportError(
                    f"the tokenizer in {str(tokenizer_dir)!r} is a SentencePiece model (spiece.model, no "
                    "tokenizer.json); reading it needs the `sentencepiece` package"
                ) from None
        from transformers import AutoTokenizer, T5EncoderModel

        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        self.model = T5EncoderModel.from_pretrained(
            str(model_dir), local_files_only=True, torch_dtype=resolve_dtype(dtype)
        )
        self.max_length = int(max_length)
        self.output_dim = int(self.model.config.d_model)
        self.attend_to_padding = attend_to_padding
        self.freeze()

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(
            check_prompts(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        input_ids = tokens.input_ids.to(self.device)  # (B, L)
        mask = tokens.attention_mask.to(self.device).bool()  # (B, L)
        attention_mask = None if self.attend_to_padding else mask.long()
        embeddings = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, D)
        return embeddings, mask


@TEXT_ENCODERS.register("open_clip")
class OpenClipTextEncoder(TextEncoder):
    """Per-token hidden states of an open_clip text tower, after its final LayerNorm, before pooling.

    Args:
        model_name: an open_clip config name ("ViT-L-14", or one added with ``open_clip.add_model_config``).
            Use the "-quickgelu" variant for OpenAI weights.
        checkpoint_path: a local open_clip checkpoint (.bin/.pt/.safetensors) of that model.
        allow_random_weights: build without a checkpoint (random weights); only for tests.
        dtype: weights' dtype.

    Only the text tower is kept (the vision tower is built, then dropped). Supported are text towers
    with open_clip's bundled CLIP BPE tokenizer, which needs no download; configs whose tokenizer or
    text tower comes from the Hugging Face hub (SigLIP, ``hf_tokenizer_name`` or ``hf_model_name``) and
    text towers with a class token or a padding mask (CoCa) are refused.
    """

    def __init__(
        self,
        model_name: str = "ViT-L-14",
        checkpoint_path: str | os.PathLike | None = None,
        allow_random_weights: bool = False,
        dtype: str | torch.dtype | None = None,
    ):
        super().__init__()
        if checkpoint_path is None and not allow_random_weights:
            raise ValueError(
                f"open_clip text encoder {model_name!r} needs `checkpoint_path`, a local weights file of that "
                "model (e.g. open_clip_pytorch_model.bin). Random weights are only for tests: pass "
                "allow_random_weights=True to get them."
            )
        if checkpoint_path is not None and not Path(checkpoint_path).expanduser().is_file():
            raise FileNotFoundError(
                f"open_clip checkpoint {str(checkpoint_path)!r} is not a file; download the weights of "
                f"{model_name!r} and point `checkpoint_path` at the local file"
            )
        import open_clip

        _check_supported_open_clip(model_name)
        model = open_clip.create_model(
            model_name,
            pretrained=str(Path(checkpoint_path).expanduser()) if checkpoint_path is not None else None,
            pretrained_image=False,
            pretrained_text=False,
        )
        text = getattr(model, "text", model)  # CustomTextCLIP keeps its tower in .text; CLIP inlines it
        self.token_embedding = text.token_embedding
        self.positional_embedding = text.positional_embedding
        self.transformer = text.transformer
        self.ln_final = text.ln_final
        self.register_buffer("attn_mask", text.attn_mask, persistent=False)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.end_of_text_id = int(self.tokenizer.eot_token_id)
        self.max_length = int(self.positional_embedding.shape[0])
        self.output_dim = int(self.positional_embedding.shape[1])
        if self.tokenizer.context_length != self.max_length:
            raise ValueError(
                f"open_clip {model_name!r}: tokenizer context length {self.tokenizer.context_length} differs "
                f"from the text tower's {self.max_length} positions"
            )
        if dtype is not None:
            self.to(resolve_dtype(dtype))
        self.freeze()

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(check_prompts(prompts)).to(self.device)  # (B, L), start ... end, 0-padded
        cast_dtype = self.transformer.get_cast_dtype()
        hidden = self.token_embedding(tokens).to(cast_dtype)  # (B, L, D)
        hidden = hidden + self.positional_embedding.to(cast_dtype)
        hidden = self.ln_final(self.transformer(hidden, attn_mask=self.attn_mask))  # (B, L, D)
        return hidden, real_token_mask(tokens, self.end_of_text_id)


def real_token_mask(tokens: torch.Tensor, end_of_text_id: int) -> torch.Tensor:
    """Bool ``(B, L)``: true up to and including each row's first end-of-text token (all true if none)."""
    is_end = tokens == end_of_text_id  # (B, L)
    length = tokens.shape[1]
    end = torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1), length - 1)  # (B,)
    return torch.arange(length, device=tokens.device)[None, :] <= end[:, None]  # (B, L)


def _check_supported_open_clip(model_name: str) -> None:
    """Refuse configs that would reach the network or whose tokens this encoder cannot read."""
    if ":" in model_name:  # checked first: looking an "hf-hub:" name up would download its config
        raise ValueError(
            f"open_clip model_name {model_name!r}: pass a config name without a schema (no 'hf-hub:' or "
            "'local-dir:'); register local configs with open_clip.add_model_config"
        )
    import open_clip

    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(
            f"unknown open_clip model {model_name!r}; see open_clip.list_models(), or register a config "
            "file with open_clip.add_model_config"
        )
    text_cfg = config.get("text_cfg", {})
    if "hf_model_name" in text_cfg or text_cfg.get("hf_tokenizer_name") or "siglip" in model_name.lower():
        raise ValueError(
            f"open_clip {model_name!r} takes its tokenizer or text tower from the Hugging Face hub; only "
            "models with open_clip's bundled CLIP tokenizer (ViT-*, RN*, convnext_*, ...) are supported"
        )
    if text_cfg.get("embed_cls") or text_cfg.get("use_pad_mask") or "multimodal_cfg" in config:
        raise ValueError(
            f"open_clip {model_name!r} has a text tower with a class token or padding mask (CoCa-style); "
            "use a CLIP-style model"
        )
