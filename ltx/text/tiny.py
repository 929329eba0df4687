"""A tiny, randomly initialised T5 text encoder written locally, for the demo and tests.

Real training points ``text_encoder.kwargs.path`` at the release's T5-XXL; the demo cannot download it,
so ``make demo`` writes this stand-in: a word-level tokenizer over the demo captions' vocabulary and a
2-layer T5 encoder (d_model 32). Random weights still give each caption distinct features, but a random T5
barely keeps word order: "a red circle ... over a green background" and "a green circle ... over a red
background" come out as nearly the same bag of word features, so a DiT cannot learn which colour is the
shape's. A trained T5 learns to mix each word with its neighbours; the stand-in is built to: its relative
position bias makes one attention head read the next word and the other the previous one
(``NEIGHBOUR_BIAS``), so "red" before "circle" and "red" before "striped" get different features.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

SPECIAL_TOKENS = {"<pad>": 0, "</s>": 1, "<unk>": 2}
NEIGHBOUR_BIAS = 10.0  # attention logit bonus of the next word (head 0) and the previous word (head 1)


def attend_to_neighbours(model, bias: float = NEIGHBOUR_BIAS) -> None:
    """Set the T5 encoder's relative position bias (shared by every layer) so that head 0 attends to the
    next token and head 1 to the previous one; every other offset gets no bias."""
    from transformers.models.t5.modeling_t5 import T5Attention

    attention = model.encoder.block[0].layer[0].SelfAttention
    if attention.n_heads < 2:
        raise ValueError(f"the tiny T5 needs at least 2 attention heads to read both neighbours, got {attention.n_heads}")
    buckets = T5Attention._relative_position_bucket(  # key position - query position: +1 = the next token
        torch.tensor([1, -1]), bidirectional=True, num_buckets=attention.relative_attention_num_buckets,
        max_distance=attention.relative_attention_max_distance)
    with torch.no_grad():
        table = attention.relative_attention_bias.weight  # (buckets, heads)
        table.zero_()
        table[buckets[0], 0] = bias
        table[buckets[1], 1] = bias


def write_tiny_t5(directory: str | Path, words: Iterable[str], dim: int = 32, seed: int = 0) -> Path:
    """Write ``tokenizer/`` and ``text_encoder/`` (the diffusers pipeline layout) under ``directory``.

    Weights depend only on ``seed`` and the vocabulary; the global RNG is left untouched.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    directory = Path(directory)
    vocab = dict(SPECIAL_TOKENS)
    for word in sorted({w.lower() for w in words}):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(  # T5 ends every sequence with </s>
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    # The generic fast class keeps this word-level tokenizer as it is under transformers 4 and 5 alike
    # (transformers 5's T5 tokenizer class rebuilds a SentencePiece-style Unigram from the vocabulary).
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>", model_max_length=128,
                                        model_input_names=["input_ids", "attention_mask"])
    tokenizer.save_pretrained(directory / "tokenizer")
    config = T5Config(vocab_size=len(vocab), d_model=dim, d_ff=2 * dim, num_layers=2, num_heads=2, d_kv=dim // 2,
                      relative_attention_num_buckets=8, relative_attention_max_distance=32,
                      feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5EncoderModel(config)
    attend_to_neighbours(model)
    model.save_pretrained(directory / "text_encoder")
    return directory
