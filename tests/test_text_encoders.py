"""Every registered text encoder on tiny local models: shapes, masks, padding, freezing, errors, offline."""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from text_fixtures import TINY_T5_DIM, make_tiny_t5, register_tiny_open_clip

from ltx.registry import TEXT_ENCODERS
from ltx.text import OpenClipTextEncoder, T5TextEncoder, TextEncoder, resolve_t5_directories


def _no_network(*args, **kwargs):
    raise AssertionError(f"a text encoder tried to reach the network: {args!r}")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt or name lookup fails the test."""
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory) -> Path:
    return make_tiny_t5(tmp_path_factory.mktemp("tiny_t5"))


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory) -> str:
    return register_tiny_open_clip(tmp_path_factory.mktemp("tiny_open_clip"))


@pytest.fixture(scope="module")
def t5(tiny_t5_dir) -> T5TextEncoder:
    return T5TextEncoder(path=tiny_t5_dir)


# How to build each registered encoder from tiny local files; a new registration must add itself here.
BUILDERS: dict[str, Callable[[Path, str], TextEncoder]] = {
    "t5": lambda t5_dir, clip_name: TEXT_ENCODERS.build("t5", path=t5_dir),
    "open_clip": lambda t5_dir, clip_name: TEXT_ENCODERS.build(
        "open_clip", model_name=clip_name, allow_random_weights=True
    ),
}


@pytest.mark.parametrize("name", TEXT_ENCODERS.names())
def test_every_text_encoder_meets_the_interface(name, tiny_t5_dir, tiny_clip_name):
    assert name in BUILDERS, f"add a tiny builder for text encoder {name!r} to BUILDERS"
    encoder = BUILDERS[name](tiny_t5_dir, tiny_clip_name)
    assert isinstance(encoder, TextEncoder)
    assert isinstance(encoder.output_dim, int) and isinstance(encoder.max_length, int)
    assert encoder.device == torch.device("cpu")

    prompts = ["a cat runs", "the dog jumps over the river at sunset"]
    embeddings, mask = encoder.encode(prompts)
    assert embeddings.shape == (2, encoder.max_length, encoder.output_dim)
    assert mask.shape == (2, encoder.max_length) and mask.dtype == torch.bool
    assert mask[:, 0].all() and not mask.all() and mask[0].sum() < mask[1].sum()
    assert torch.isfinite(embeddings).all() and not embeddings.requires_grad

    again, again_mask = encoder(prompts)
    assert torch.equal(embeddings, again) and torch.equal(mask, again_mask)
    alone, _ = encoder.encode(prompts[:1])
    torch.testing.assert_close(alone[0], embeddings[0])  # the batch does not change a prompt's encoding

    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    encoder.train()
    assert not any(module.training for module in encoder.modules())
    with pytest.raises(TypeError, match="wrap it in a list"):
        encoder.encode("a cat")
    with pytest.raises(ValueError, match="at least one prompt"):
        encoder.encode([])


# T5 -------------------------------------------------------------------------------------------------


def test_t5_shapes_and_mask_match_token_counts(t5):
    assert (t5.max_length, t5.output_dim) == (128, TINY_T5_DIM)
    embeddings, mask = t5.encode(["a cat runs", "the dog jumps over the river at sunset", "a zebra"])
    assert embeddings.shape == (3, 128, TINY_T5_DIM) and embeddings.dtype == torch.float32
    assert mask.sum(dim=1).tolist() == [4, 9, 3]  # words + </s>; an unknown word is one <unk> token
    assert torch.equal(mask, torch.arange(128)[None] < torch.tensor([[4], [9], [3]]))


def test_t5_padding_does_not_change_real_tokens(tiny_t5_dir, t5):
    prompts = ["a cat runs", "the dog jumps over the river at sunset"]
    long, long_mask = t5.encode(prompts)
    short, short_mask = T5TextEncoder(path=tiny_t5_dir, max_length=16).encode(prompts)
    assert short.shape == (2, 16, TINY_T5_DIM) and torch.equal(short_mask, long_mask[:, :16])
    torch.testing.assert_close(short[short_mask], long[long_mask])  # masked padding is invisible

    attending = T5TextEncoder(path=tiny_t5_dir, attend_to_padding=True)  # diffusers LTXPipeline behaviour
    attended, attended_mask = attending.encode(prompts)
    assert torch.equal(attended_mask, long_mask) and not torch.allclose(attended[long_mask], long[long_mask])


def test_t5_truncates_long_prompts(tiny_t5_dir):
    encoder = T5TextEncoder(path=tiny_t5_dir, max_length=8)
    embeddings, mask = encoder.encode(["a cat runs over the beach at night in the rain with a dog"])
    assert embeddings.shape == (1, 8, TINY_T5_DIM) and mask.all()


def test_t5_loads_every_layout(tiny_t5_dir, t5, tmp_path):
    reference, _ = t5.encode(["a red car drives"])
    flat = tmp_path / "flat"  # model and tokenizer files in one folder
    shutil.copytree(tiny_t5_dir / "text_encoder", flat)
    shutil.copytree(tiny_t5_dir / "tokenizer", flat, dirs_exist_ok=True)
    layouts = [
        {"path": tiny_t5_dir},  # diffusers pipeline layout
        {"path": flat},
        {"path": tiny_t5_dir / "text_encoder"},  # sibling tokenizer/ found
        {"path": tiny_t5_dir / "text_encoder", "tokenizer_path": tiny_t5_dir / "tokenizer"},
        {"path": str(flat), "tokenizer_path": str(tiny_t5_dir / "tokenizer")},
    ]
    for kwargs in layouts:
        embeddings, _ = T5TextEncoder(**kwargs).encode(["a red car drives"])
        torch.testing.assert_close(embeddings, reference)
    assert resolve_t5_directories(tiny_t5_dir) == (tiny_t5_dir / "text_encoder", tiny_t5_dir / "tokenizer")
    assert resolve_t5_directories(flat) == (flat, flat)


def test_t5_dtype(tiny_t5_dir):
    embeddings, _ = T5TextEncoder(path=tiny_t5_dir, dtype="bfloat16").encode(["a cat"])
    assert embeddings.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'float8'; valid names: float32"):
        T5TextEncoder(path=tiny_t5_dir, dtype="float8")


def test_t5_missing_paths_explain_what_to_download(tiny_t5_dir, tmp_path):
    download = "Download the release's text_encoder/ and tokenizer/ folders"
    with pytest.raises(FileNotFoundError, match=f"does not exist or is not a directory. {download}"):
        TEXT_ENCODERS.build("t5", path=tmp_path / "missing")
    a_file = tmp_path / "weights.safetensors"
    a_file.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        T5TextEncoder(path=a_file)
    with pytest.raises(FileNotFoundError, match=f"no T5 config.json .*{download}"):
        T5TextEncoder(path=tmp_path)
    model_only = tmp_path / "model_only"
    shutil.copytree(tiny_t5_dir / "text_encoder", model_only)
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        T5TextEncoder(path=model_only)
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        T5TextEncoder(path=tiny_t5_dir, tokenizer_path=tmp_path / "nowhere")


def test_t5_sentencepiece_tokenizer_needs_the_package(tiny_t5_dir, tmp_path, monkeypatch):
    """sentencepiece is a dependency; if an environment lacks it, the error says what to install."""
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # makes `import sentencepiece` fail
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    (tokenizer / "spiece.model").write_bytes(b"not read")
    with pytest.raises(ImportError, match="needs the `sentencepiece` package"):
        T5TextEncoder(path=tiny_t5_dir / "text_encoder", tokenizer_path=tokenizer)


# open_clip ------------------------------------------------------------------------------------------


def test_open_clip_refuses_random_weights_unless_allowed(tmp_path):
    with pytest.raises(ValueError, match="needs `checkpoint_path`.*allow_random_weights=True"):
        TEXT_ENCODERS.build("open_clip", model_name="ViT-L-14")
    with pytest.raises(FileNotFoundError, match="is not a file"):
        OpenClipTextEncoder(model_name="ViT-L-14", checkpoint_path=tmp_path / "missing.bin")


@pytest.mark.parametrize(
    "model_name, message",
    [
        ("no-such-model", "unknown open_clip model"),
        ("hf-hub:someone/some-clip", "without a schema"),
        ("ViT-B-16-SigLIP", "from the Hugging Face hub"),
        ("coca_ViT-B-32", "class token"),
    ],
)
def test_open_clip_refuses_models_it_cannot_run_offline(model_name, message):
    with pytest.raises(ValueError, match=message):
        OpenClipTextEncoder(model_name=model_name, allow_random_weights=True)


def test_open_clip_per_token_states_from_a_checkpoint(tiny_clip_name, tmp_path):
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = open_clip.create_model(tiny_clip_name, pretrained_image=False, pretrained_text=False).eval()
    checkpoint = tmp_path / "tiny_clip.pt"
    torch.save(reference.state_dict(), checkpoint)
    encoder = OpenClipTextEncoder(model_name=tiny_clip_name, checkpoint_path=checkpoint)
    assert (encoder.max_length, encoder.output_dim) == (77, 32)
    assert not hasattr(encoder, "visual")

    prompts = ["a cat", "a dog running on the beach at sunset"]
    hidden, mask = encoder.encode(prompts)
    assert hidden.shape == (2, 77, 32)
    tokens = open_clip.get_tokenizer(tiny_clip_name)(prompts)
    token_counts = (tokens != 0).sum(dim=1)  # start, words, end; padding is 0
    assert torch.equal(mask.sum(dim=1), token_counts)
    assert torch.equal(mask, torch.arange(77)[None] < token_counts[:, None])
    # Pooling the end-of-text state and projecting it gives open_clip's own text features.
    end = token_counts - 1
    pooled = hidden[torch.arange(2), end] @ reference.text_projection
    with torch.no_grad():
        torch.testing.assert_close(pooled, reference.encode_text(tokens), rtol=1e-5, atol=1e-5)

    low, low_mask = OpenClipTextEncoder(model_name=tiny_clip_name, checkpoint_path=checkpoint, dtype="bf16").encode(
        prompts
    )
    assert low.dtype == torch.bfloat16 and torch.equal(low_mask, mask)
    torch.testing.assert_close(low.float(), hidden, rtol=0.05, atol=0.1)


def test_open_clip_tokenizer_is_bundled(tiny_clip_name):
    import open_clip

    tokenizer = open_clip.get_tokenizer(tiny_clip_name)  # the network guard would fail a download
    assert isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer) and tokenizer.context_length == 77


def test_tiny_t5_heads_read_the_neighbouring_words(tiny_t5_dir):
    # the demo's stand-in keeps word order: head 0 attends to the next token, head 1 to the previous one,
    # so a colour word before a shape word and the same word before a background word differ
    from transformers import AutoTokenizer, T5EncoderModel

    model = T5EncoderModel.from_pretrained(tiny_t5_dir / "text_encoder", attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5_dir / "tokenizer")
    captions = ["a red cat sits on a blue mat", "a blue cat sits on a red mat"]
    tokens = tokenizer(captions, return_tensors="pt")
    with torch.no_grad():
        output = model(**tokens, output_attentions=True)
    attention = output.attentions[0][0]  # (heads, query, key) of the first caption, first layer
    length = attention.shape[-1]
    assert (attention[0, :-1].argmax(-1) == torch.arange(1, length)).all()  # the next token
    assert (attention[1, 1:].argmax(-1) == torch.arange(0, length - 1)).all()  # the previous token
    assert attention[0, :-1].diagonal(offset=1).min() > 0.9
    features = output.last_hidden_state  # (2, tokens, dim)
    red_on_cat, red_on_mat = features[0, 1], features[1, 6]
    assert torch.cosine_similarity(red_on_cat, red_on_mat, dim=0) < 0.95
