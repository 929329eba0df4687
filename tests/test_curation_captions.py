"""Aesthetic scoring and recaptioning stages, and every captioner, on tiny local models (nothing fetched)."""

from __future__ import annotations

import json
import pickle
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import moving_square_frames
from text_fixtures import register_tiny_open_clip

from data_pipeline.captioners import (
    CocaCaptioner,
    NoCaption,
    SidecarCaptioner,
    VlmCaptioner,
    strip_boilerplate,
)
from data_pipeline.clips import Clip, Rejection
from data_pipeline.stages.aesthetic import LAION_PREDICTOR_KEYS, AestheticMLP, AestheticStage, load_predictor
from data_pipeline.stages.caption import CaptionStage
from ltx.data.video_io import encode_mp4, encode_png
from ltx.registry import CAPTIONERS, CURATION_STAGES

NUM_FRAMES = 17
TINY_COCA_NAME = "ltx-test-tiny-coca"


@pytest.fixture(scope="module", autouse=True)
def network_attempts() -> list[str]:
    """Every connection attempt or name lookup while this module runs (model building included) fails."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        attempts.append(repr(args)[:200])
        raise OSError(f"tests must not reach the network: {args!r}")

    with pytest.MonkeyPatch.context() as patch:
        for name in ("connect", "connect_ex"):
            patch.setattr(socket.socket, name, refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield attempts


@pytest.fixture(autouse=True)
def no_network(network_attempts: list[str]):
    """Fail the test when anything tried the network, even if a library swallowed the error."""
    yield
    attempts = list(network_attempts)
    network_attempts.clear()
    assert not attempts, f"network attempted: {attempts}"


# ---------------------------------------------------------------------------------------------- media
@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """``plain.mp4`` + ``plain.txt``; ``scenes.mp4`` + ``scenes.truth.json`` (cut at frame 5); ``bare.mp4``
    with no sidecar; ``broken.mp4`` that is not a video; ``still.png``, an image."""
    root = tmp_path_factory.mktemp("caption_media")
    video = encode_mp4(moving_square_frames(NUM_FRAMES, 64, 64, seed=1), fps=24.0, preset="ultrafast")
    for name in ("plain", "scenes", "bare"):
        (root / f"{name}.mp4").write_bytes(video)
    (root / "plain.txt").write_text("  The video shows a white square\n moving right .\n")
    scenes = [{"start_frame": 0, "end_frame": 5, "caption": "a first shot"},
              {"start_frame": 5, "end_frame": NUM_FRAMES, "caption": "a second shot"}]
    (root / "scenes.truth.json").write_text(json.dumps({"name": "scenes", "scenes": scenes}))
    (root / "scenes.txt").write_text("the whole source\n")
    (root / "broken.mp4").write_bytes(b"not a video at all")
    (root / "still.png").write_bytes(encode_png(moving_square_frames(1, 48, 64, seed=4)[0]))
    return root


def make_clip(media: Path, name: str = "plain", start: int = 0, end: int = NUM_FRAMES, **fields: Any) -> Clip:
    return Clip(source=str(media / f"{name}.mp4"), start_frame=start, end_frame=end, **fields)


# ------------------------------------------------------------------------------------------ aesthetic
def write_tiny_aesthetic_weights(directory: Path) -> dict[str, Any]:
    """AestheticStage kwargs for tiny local weights written to ``directory``: a tiny open_clip (16-d
    embeddings, registered from a local config) checkpoint and a random predictor head of that input dim."""
    import open_clip

    model_name = register_tiny_open_clip(directory)
    with torch.random.fork_rng(devices=[]):  # seeded weights; the global generator is left as it was
        torch.manual_seed(0)
        torch.save(open_clip.create_model(model_name, pretrained_text=False).state_dict(), directory / "clip.pt")
        torch.save(AestheticMLP(16).state_dict(), directory / "predictor.pth")
    return {"model_name": model_name, "clip_checkpoint": directory / "clip.pt",
            "predictor_path": directory / "predictor.pth", "device": "cpu"}


@pytest.fixture(scope="module")
def aesthetic_weights(tmp_path_factory) -> dict[str, Any]:
    return write_tiny_aesthetic_weights(tmp_path_factory.mktemp("aesthetic"))


@pytest.mark.parametrize("given", [{}, {"clip_checkpoint": "clip.pt"}, {"predictor_path": "predictor.pth"}])
def test_aesthetic_refuses_to_construct_without_weights(given):
    with pytest.raises(ValueError) as error:
        AestheticStage(**given)
    message = str(error.value)
    for key in ("clip_checkpoint", "predictor_path"):
        assert (key in message.split(" not given")[0]) == (key not in given)
    assert "turn the stage off" in message and "sac+logos+ava1-l14-linearMSE.pth" in message


def test_aesthetic_refuses_missing_files_hub_names_and_bad_options(aesthetic_weights, tmp_path):
    weights = dict(aesthetic_weights)
    with pytest.raises(FileNotFoundError, match="predictor_path"):
        AestheticStage(**{**weights, "predictor_path": tmp_path / "absent.pth"})
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        AestheticStage(**{**weights, "clip_checkpoint": tmp_path / "absent.pt"})
    with pytest.raises(ValueError, match="without a schema"):
        AestheticStage(**{**weights, "model_name": "hf-hub:laion/CLIP-ViT-L-14"})
    with pytest.raises(ValueError, match="reduce"):
        AestheticStage(**weights, reduce="median")
    with pytest.raises(ValueError, match="frame_fractions"):
        AestheticStage(**weights, frame_fractions=(0.5, 1.5))
    torch.save({"layers.0.weight": torch.zeros(1024, 768)}, tmp_path / "laion_partial.pth")
    with pytest.raises(ValueError, match="does not fit"):
        AestheticStage(**{**weights, "predictor_path": tmp_path / "laion_partial.pth"})
    torch.save(AestheticMLP(768).state_dict(), tmp_path / "laion.pth")
    with pytest.raises(ValueError, match="embeds in 16 dims but the predictor"):
        AestheticStage(**{**weights, "predictor_path": tmp_path / "laion.pth"})


def test_laion_shaped_predictor_state_dict_loads(tmp_path):
    head = AestheticMLP(768)
    state = head.state_dict()
    assert tuple(state) == LAION_PREDICTOR_KEYS
    assert [tuple(state[f"layers.{i}.weight"].shape) for i in (0, 2, 4, 6, 7)] == [
        (1024, 768), (128, 1024), (64, 128), (16, 64), (1, 16)]
    from safetensors.torch import save_file

    torch.save(state, tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    save_file(state, str(tmp_path / "predictor.safetensors"))
    torch.save({"state_dict": state}, tmp_path / "lightning.ckpt")
    embeddings = torch.nn.functional.normalize(torch.randn(3, 768), dim=-1)
    expected = head.eval()(embeddings)
    for name in ("sac+logos+ava1-l14-linearMSE.pth", "predictor.safetensors", "lightning.ckpt"):
        loaded = load_predictor(tmp_path / name)
        assert loaded.layers[0].in_features == 768 and not loaded.training
        torch.testing.assert_close(loaded(embeddings), expected)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a LAION predictor"):
        load_predictor(tmp_path / "other.pth")


def test_aesthetic_scores_are_deterministic_and_stored(aesthetic_weights, media):
    assert CURATION_STAGES.get("aesthetic") is AestheticStage
    stage = AestheticStage(**aesthetic_weights, min_score=None)
    [scored] = stage(make_clip(media))
    assert isinstance(scored, Clip) and isinstance(scored.aesthetic_score, float)
    frame_scores = scored.extra["aesthetic_frame_scores"]
    assert len(frame_scores) == 3 and scored.aesthetic_score == pytest.approx(np.mean(frame_scores))
    assert stage.frame_indices(make_clip(media)) == [1, 8, 15]
    [image] = stage(Clip(source=str(media / "still.png"), start_frame=0, end_frame=1))  # images: frame 0 thrice
    assert image.extra["aesthetic_frame_scores"][0] == pytest.approx(image.aesthetic_score, abs=1e-6)
    [again] = AestheticStage(**aesthetic_weights, min_score=None)(make_clip(media))  # a fresh load
    assert again.aesthetic_score == pytest.approx(scored.aesthetic_score, abs=1e-6)
    [lowest] = AestheticStage(**aesthetic_weights, min_score=None, reduce="min")(make_clip(media))
    assert lowest.aesthetic_score == pytest.approx(min(frame_scores), abs=1e-6)


def test_aesthetic_threshold_rejects_low_scores(aesthetic_weights, media):
    [scored] = AestheticStage(**aesthetic_weights, min_score=None)(make_clip(media))
    score = scored.aesthetic_score
    [kept] = AestheticStage(**aesthetic_weights, min_score=score - 1.0)(make_clip(media))
    assert isinstance(kept, Clip) and kept.aesthetic_score == pytest.approx(score, abs=1e-6)
    [rejected] = AestheticStage(**aesthetic_weights, min_score=score + 1.0)(make_clip(media))
    assert isinstance(rejected, Rejection)
    assert (rejected.reason, rejected.stage, rejected.item) == ("low_aesthetic", "aesthetic", make_clip(media).key)


def test_aesthetic_rejects_bad_clips_and_loads_once_per_process(aesthetic_weights, media):
    stage = AestheticStage(**aesthetic_weights)
    assert "_model" not in stage.__dict__  # nothing heavy is loaded at construction
    [unreadable] = stage(make_clip(media, "broken"))
    assert isinstance(unreadable, Rejection) and unreadable.reason == "unreadable"
    [empty] = stage(make_clip(media, end=0))
    assert isinstance(empty, Rejection) and empty.reason == "no_frames"
    model = stage._model
    stage(make_clip(media))
    assert stage._model is model
    copy = pickle.loads(pickle.dumps(stage))  # what a spawned worker receives: no model, loads its own
    assert "_model" not in copy.__dict__ and copy.predictor is not None


# ------------------------------------------------------------------------------------------- captions
@pytest.mark.parametrize("text, expected", [
    ("The video shows a cat on a sofa.", "A cat on a sofa."),
    ("  this VIDEO shows   a dog\nrunning . ", "A dog running."),
    ("In this video, the video shows a red car", "A red car"),
    ("In this video the sun sets", "In this video the sun sets"),  # the listed prefix has its comma
    ("The image shows: a beach at night", "A beach at night"),
    ("a video of a horse jumping", "A horse jumping"),
    ("a video often shows cats", "a video often shows cats"),  # prefixes end at word boundaries
    ("a cat sleeps , then wakes ;", "a cat sleeps, then wakes"),  # no prefix: the case is kept
    ("The video shows", ""),
    ("", ""),
])
def test_strip_boilerplate(text, expected):
    assert strip_boilerplate(text) == expected


def test_strip_boilerplate_with_custom_prefixes():
    assert strip_boilerplate("Caption: a cat", prefixes=("caption:",)) == "A cat"
    assert strip_boilerplate("The video shows a cat", prefixes=()) == "The video shows a cat"
    with pytest.raises(TypeError, match="string"):
        strip_boilerplate(None)  # type: ignore[arg-type]


def test_sidecar_reads_the_text_file_or_the_scene_overlapping_most(media):
    captioner = SidecarCaptioner()
    no_frames = np.zeros((0, 0, 0, 3), np.uint8)
    assert captioner.caption(make_clip(media), no_frames) == "The video shows a white square\n moving right ."
    assert captioner.caption(make_clip(media, "scenes", 3, 12), no_frames) == "a second shot"  # 2 vs 7 frames
    assert captioner.caption(make_clip(media, "scenes", 0, 8), no_frames) == "a first shot"  # 5 vs 3 frames
    assert captioner.caption(make_clip(media, "scenes", 40, 50), no_frames) == "the whole source"  # no overlap
    assert SidecarCaptioner(use_scenes=False).caption(make_clip(media, "scenes", 3, 12), no_frames) == "the whole source"
    with pytest.raises(NoCaption, match=r"bare\.txt"):
        captioner.caption(make_clip(media, "bare"), no_frames)


def test_caption_stage_with_sidecar_strips_and_rejects_missing(media):
    assert CURATION_STAGES.get("caption") is CaptionStage
    stage = CaptionStage(captioner="sidecar")
    [clip] = stage(make_clip(media))
    assert (clip.caption, clip.caption_source) == ("A white square moving right.", "sidecar")
    [scene] = stage(make_clip(media, "scenes", 6, 17))
    assert scene.caption == "a second shot"
    [missing] = stage(make_clip(media, "bare"))
    assert isinstance(missing, Rejection) and (missing.reason, missing.stage) == ("no_caption", "caption")
    assert "bare.txt" in missing.detail


# ------------------------------------------------------------------------------------------------ coca
@pytest.fixture(scope="module")
def tiny_coca(tmp_path_factory) -> dict[str, Any]:
    """A tiny CoCa config (32-wide towers, 1 layer each) registered with open_clip, and a checkpoint of it."""
    import open_clip

    root = tmp_path_factory.mktemp("tiny_coca")
    towers = {"context_length": 76, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    config = {
        "embed_dim": 32,  # CoCa's decoder cross-attends to image tokens of this width: equal to its width
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16,
                       "attentional_pool": True, "attn_pooler_heads": 2, "attn_pooler_queries": 8,
                       "output_tokens": True},
        "text_cfg": {**towers, "embed_cls": True, "output_tokens": True},
        "multimodal_cfg": {**towers, "attn_pooler_heads": 2, "dim_head": 16},
        "custom_text": True,
    }
    (root / f"{TINY_COCA_NAME}.json").write_text(json.dumps(config))
    if TINY_COCA_NAME not in open_clip.list_models():
        open_clip.add_model_config(root / f"{TINY_COCA_NAME}.json")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model(TINY_COCA_NAME)
        torch.nn.init.normal_(model.text_decoder.text_projection, std=0.5)  # open_clip leaves it 0: logits tie
    torch.save(model.state_dict(), root / "coca.pt")
    return {"model_name": TINY_COCA_NAME, "checkpoint_path": root / "coca.pt", "device": "cpu",
            "generation_type": "top_k", "max_tokens": 8, "min_tokens": 3}


def test_coca_captions_the_middle_frame(tiny_coca, media):
    captioner = CocaCaptioner(**tiny_coca)
    frames = np.stack(moving_square_frames(3, 48, 48, seed=2))
    text = captioner.caption(make_clip(media), frames)
    assert isinstance(text, str) and text
    assert "<start_of_text>" not in text and "<end_of_text>" not in text
    changed = frames.copy()
    changed[[0, 2]] = 0  # only the middle frame is captioned, and decoding is greedy: the same caption
    assert captioner.caption(make_clip(media), changed) == text
    beams = CocaCaptioner(**{**tiny_coca, "generation_type": "beam_search", "max_tokens": 7})
    assert isinstance(beams.caption(make_clip(media), frames), str)


def test_coca_refuses_bad_configs(tiny_coca, aesthetic_weights):
    with pytest.raises(ValueError, match="checkpoint_path"):
        CocaCaptioner(model_name=TINY_COCA_NAME)
    with pytest.raises(ValueError, match="not a CoCa model"):
        CocaCaptioner(model_name=aesthetic_weights["model_name"], allow_random_weights=True)
    with pytest.raises(ValueError, match="without a schema"):
        CocaCaptioner(model_name="hf-hub:laion/CoCa-ViT-L-14", allow_random_weights=True)
    with pytest.raises(ValueError, match="hub"):
        CocaCaptioner(model_name="coca_roberta-ViT-B-32", allow_random_weights=True)
    with pytest.raises(ValueError, match="min_tokens"):
        CocaCaptioner(**{**tiny_coca, "min_tokens": 8})
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\) uint8"):
        CocaCaptioner(**tiny_coca).caption(Clip(source="x.mp4"), np.zeros((0, 8, 8, 3), np.uint8))


# ------------------------------------------------------------------------------------------------- vlm
VLM_WORDS = ("a the red blue green white black circle square shape moves left right up down over background video "
             "shows of describe this content in two sentences shortly . , user assistant").split()


def _word_tokenizer(specials: list[str]):
    """A WordLevel ``tokenizers`` vocabulary: ``specials`` first, then VLM_WORDS; words split on spaces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {word: index for index, word in enumerate(specials + list(VLM_WORDS))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[0]))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces, tidies punctuation
    return tokenizer, vocab


def _chat_template(image: str) -> str:
    return ("{% for message in messages %}{{ message['role'] }} {% for item in message['content'] %}"
            "{% if item['type'] == 'image' %}" + image + " {% elif item['type'] == 'video' %}<video> "
            "{% else %}{{ item['text'] }} {% endif %}{% endfor %}{% endfor %}"
            "{% if add_generation_prompt %}assistant {% endif %}")


def write_tiny_llava(directory: Path) -> Path:
    """A tiny random LLaVA (CLIP vision 32-wide, 1 layer; Llama 32-wide, 1 layer) and its processor."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    tokenizer, vocab = _word_tokenizer(["<unk>", "<pad>", "<s>", "</s>", "<image>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>", additional_special_tokens=["<image>"],
                                        model_input_names=["input_ids", "attention_mask"])
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=16,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token="<image>", chat_template=_chat_template("<image>"))
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=16),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                pad_token_id=1, bos_token_id=2, eos_token_id=3),
        image_token_index=vocab["<image>"], vision_feature_layer=-1, vision_feature_select_strategy="default",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlavaForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def write_tiny_qwen2_5_vl(directory: Path) -> Path:
    """A tiny random Qwen2.5-VL (vision depth 1, LM 1 layer, 32 wide) with image and video processors."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2TokenizerFast,
        Qwen2VLImageProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    specials = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tokenizer, vocab = _word_tokenizer(specials)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", additional_special_tokens=specials[2:],
                                   model_input_names=["input_ids", "attention_mask"])
    pixels = {"min_pixels": 28 * 28 * 4, "max_pixels": 56 * 56, "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}
    template = _chat_template("<|vision_start|> <|image_pad|> <|vision_end|>").replace(
        "<video>", "<|vision_start|> <|video_pad|> <|vision_end|>")
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=template)
    config = Qwen2_5_VLConfig(
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                       "fullatt_block_indexes": [0]},
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"],
        eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<|endoftext|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Qwen2_5_VLForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


VLM_WRITERS: dict[str, Callable[[Path], Path]] = {"llava": write_tiny_llava, "qwen2_5_vl": write_tiny_qwen2_5_vl}


@pytest.fixture(scope="module")
def tiny_vlms(tmp_path_factory) -> dict[str, Path]:
    return {name: write(tmp_path_factory.mktemp(name)) for name, write in VLM_WRITERS.items()}


@pytest.mark.parametrize("architecture, as_video", [("llava", False), ("qwen2_5_vl", False), ("qwen2_5_vl", True)])
def test_vlm_captions_from_a_local_directory(tiny_vlms, media, architecture, as_video):
    captioner = VlmCaptioner(path=tiny_vlms[architecture], prompt="describe this video shortly .", max_new_tokens=6,
                             num_frames=2, as_video=as_video, device="cpu")
    frames = np.stack(moving_square_frames(4, 48, 48, seed=3))
    text = captioner.caption(make_clip(media), frames)
    assert isinstance(text, str)
    assert captioner.caption(make_clip(media), frames) == text  # greedy decoding: deterministic
    prompt = captioner.build_prompt(2)
    assert prompt.startswith("user ") and prompt.endswith("describe this video shortly . assistant ")
    media_tokens = {"llava": "<image>", "qwen2_5_vl": "<|video_pad|>" if as_video else "<|image_pad|>"}[architecture]
    assert prompt.count(media_tokens) == (1 if as_video else 2)
    assert set(text.split()) <= set(VLM_WORDS) | {"."}  # only new tokens are decoded: no prompt or specials


def test_vlm_refuses_what_is_not_a_local_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local model directory"):
        VlmCaptioner(path="Qwen/Qwen2.5-VL-7B-Instruct")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="prompt"):
        VlmCaptioner(path=tmp_path, prompt=" ")
    with pytest.raises(ValueError, match="positive"):
        VlmCaptioner(path=tmp_path, num_frames=0)


# ------------------------------------------------------------------------------------ the caption stage
CAPTIONER_SETUPS: dict[str, Callable[[pytest.FixtureRequest], dict[str, Any]]] = {
    "sidecar": lambda request: {},
    "coca": lambda request: request.getfixturevalue("tiny_coca"),
    "vlm": lambda request: {"path": request.getfixturevalue("tiny_vlms")["llava"], "max_new_tokens": 6, "device": "cpu"},
}


@pytest.mark.parametrize("name", CAPTIONERS.names())
def test_every_captioner_through_the_caption_stage(name, request, media):
    assert name in CAPTIONER_SETUPS, f"add a tiny local setup for captioner {name!r} to CAPTIONER_SETUPS"
    stage = CaptionStage(captioner=name, captioner_kwargs=CAPTIONER_SETUPS[name](request), num_frames=3)
    [clip] = stage(make_clip(media))
    assert isinstance(clip, Clip), clip
    assert clip.caption_source == name == stage.captioner.name
    assert clip.caption and clip.caption == strip_boilerplate(clip.caption)
    assert pickle.loads(pickle.dumps(stage)).source_name == name  # workers receive a picklable stage


class CountingCaptioner:
    """A fake captioner that counts its calls and returns a fixed text."""

    name = "counting"

    def __init__(self, text: str = "a counted caption", error: Exception | None = None):
        self.text, self.error, self.calls, self.frame_shapes = text, error, 0, []

    def caption(self, clip: Clip, frames: np.ndarray) -> str:
        self.calls += 1
        self.frame_shapes.append(frames.shape)
        if self.error is not None:
            raise self.error
        return self.text


def stage_with(captioner: CountingCaptioner, **kwargs: Any) -> CaptionStage:
    stage = CaptionStage(captioner="sidecar", **kwargs)
    stage.captioner, stage.source_name = captioner, captioner.name
    return stage


def test_caption_stage_skips_clips_already_captioned(media):
    counting = CountingCaptioner()
    stage = stage_with(counting, num_frames=3, max_side=32)
    captioned = make_clip(media, caption="kept as is", caption_source="earlier_run")
    assert stage(captioned) == [captioned] and counting.calls == 0
    [fresh] = stage(make_clip(media))
    assert (fresh.caption, fresh.caption_source, counting.calls) == ("a counted caption", "counting", 1)
    assert counting.frame_shapes == [(3, 32, 32, 3)]  # evenly spaced, shrunk to max_side
    assert stage(fresh) == [fresh] and counting.calls == 1  # a rerun skips it


@pytest.mark.parametrize("captioner, clip_name, reason", [
    (CountingCaptioner(text="The video shows "), "plain", "empty_caption"),
    (CountingCaptioner(error=NoCaption("nothing here")), "plain", "no_caption"),
    (CountingCaptioner(error=RuntimeError("model blew up")), "plain", "caption_failed"),
    (CountingCaptioner(), "broken", "unreadable"),
    (CountingCaptioner(), "empty", "no_frames"),
])
def test_caption_stage_rejects_instead_of_raising(media, captioner, clip_name, reason):
    clip = make_clip(media, "plain", end=0) if clip_name == "empty" else make_clip(media, clip_name)
    [rejection] = stage_with(captioner)(clip)
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.stage, rejection.item) == (reason, "caption", clip.key)


def test_caption_stage_checks_its_config():
    with pytest.raises(LookupError, match="Valid names"):
        CaptionStage(captioner="no_such_captioner")
    with pytest.raises(ValueError, match="num_frames"):
        CaptionStage(num_frames=0)
    with pytest.raises(TypeError):
        CaptionStage(captioner_kwargs={"no_such_option": 1})


def test_a_captioner_that_cannot_load_fails_loudly_not_per_clip(tiny_vlms, tmp_path, media):
    import shutil

    directory = shutil.copytree(tiny_vlms["llava"], tmp_path / "no_template")
    for name in ("chat_template.jinja", "chat_template.json"):
        (directory / name).unlink(missing_ok=True)
    stage = CaptionStage(captioner="vlm", captioner_kwargs={"path": directory, "device": "cpu"})
    with pytest.raises(ValueError, match="no chat template"):  # a configuration error, not a rejected clip
        stage(make_clip(media))
