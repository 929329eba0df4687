"""The WebDataset data module on generated shards: buckets, rank/worker splitting, skips, start-up checks."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch
from helpers import compose_config, image_sample, video_sample
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from ltx.data.datamodule import VideoDataModule, expand_shards

SMALL_BUCKETS = [[1, 64, 64], [9, 64, 64], [17, 64, 64]]


def collect(loader) -> list[dict]:
    return list(loader)


@pytest.fixture(scope="module")
def exact_shards(make_shards):
    """8 shards of 3 samples (videos of different lengths and images), unique keys."""
    shards = []
    for shard in range(8):
        samples = [video_sample(f"s{shard}_v{i}", num_frames=9 + 8 * i, seed=shard * 10 + i) for i in range(2)]
        samples.append(image_sample(f"s{shard}_img", seed=shard))
        shards.append(samples)
    return make_shards("exact", shards)


def test_demo_batches_have_the_shape_of_their_bucket(demo_dir):
    cfg = compose_config("train_vae", [f"data.train_shards={demo_dir / 'shards'}", "data.batches_per_epoch=8"])
    datamodule = instantiate(cfg.data)
    batches = collect(datamodule.train_dataloader())
    assert len(batches) == 8
    buckets = {tuple(b) for b in cfg.data.buckets}
    for batch in batches:
        frames, height, width = batch["bucket"]
        assert batch["bucket"] in buckets
        assert tuple(batch["video"].shape) == (cfg.data.batch_size, 3, frames, height, width)
        assert batch["video"].min() >= -1.0 and batch["video"].max() <= 1.0
        assert batch["video"].std() > 0.05  # real pictures, not a constant
        assert batch["fps"].tolist() == [24.0] * cfg.data.batch_size
        assert all(caption and caption.startswith("a") for caption in batch["caption"])
        # images (the demo's image_* sources) only ever fill the 1-frame buckets, videos never do
        assert all(key.startswith("image_") == (frames == 1) for key in batch["key"])
    assert {b["bucket"][0] for b in batches} > {1}
    assert not datamodule.skipped


@pytest.mark.parametrize("num_workers", [0, 2])
def test_two_ranks_times_workers_read_every_shard_exactly_once_per_epoch(exact_shards, num_workers):
    all_keys = sorted(f"s{s}_{k}" for s in range(8) for k in ("v0", "v1", "img"))
    per_rank: list[list[str]] = []
    modules = [
        VideoDataModule(str(exact_shards[0].parent), SMALL_BUCKETS, batch_size=2, resampled=False,
                        num_workers=num_workers, rank=rank, world_size=2, seed=7)
        for rank in range(2)
    ]
    loaders = [module.train_dataloader() for module in modules]
    epochs = []
    for _ in range(2):
        per_rank = [[key for batch in loader for key in batch["key"]] for loader in loaders]
        seen = Counter(key for keys in per_rank for key in keys)
        assert sorted(seen) == all_keys and set(seen.values()) == {1}
        shards_by_rank = [{key.split("_")[0] for key in keys} for keys in per_rank]
        assert not shards_by_rank[0] & shards_by_rank[1] and len(shards_by_rank[0]) == 4
        epochs.append(shards_by_rank[0])
    assert epochs[0] != epochs[1]  # shards are reshuffled (with a seed shared by the ranks) every epoch


def test_resampled_ranks_get_equal_batch_counts_whatever_the_shard_sizes(make_shards):
    uneven = make_shards("uneven", [[video_sample(f"u{i}_{j}", seed=i + j) for j in range(n)] for i, n in enumerate([1, 5, 2])])
    counts, keys = [], []
    for rank in range(2):
        module = VideoDataModule(str(uneven[0].parent), SMALL_BUCKETS, batch_size=2, num_workers=2,
                                 batches_per_epoch=6, rank=rank, world_size=2, seed=3)
        loader = module.train_dataloader()
        batches = collect(loader)
        counts.append(len(batches))
        keys.append([k for b in batches for k in b["key"]])
        assert len(loader) == 6
    assert counts == [6, 6]
    assert keys[0] != keys[1]  # ranks draw different shards
    again = VideoDataModule(str(uneven[0].parent), SMALL_BUCKETS, batch_size=2, num_workers=2,
                            batches_per_epoch=6, rank=1, world_size=2, seed=3)
    assert [k for b in collect(again.train_dataloader()) for k in b["key"]] == keys[1]  # reproducible


def test_corrupt_mp4_is_skipped_counted_and_warned(make_shards, caplog):
    broken = video_sample("broken")
    broken.media = broken.media[:200] + b"\x00garbage" * 50
    shards = make_shards("corrupt", [[video_sample("good_a", seed=1), broken, video_sample("good_b", seed=2)]])
    module = VideoDataModule(str(shards[0]), SMALL_BUCKETS, batch_size=1, resampled=False, num_workers=0)
    with caplog.at_level(logging.WARNING, logger="ltx.data.pipeline"):
        keys = [key for batch in collect(module.train_dataloader()) for key in batch["key"]]
    assert sorted(keys) == ["good_a", "good_b"]
    assert module.skipped == Counter({"decode_error": 1})
    assert any("broken" in record.getMessage() and "decode_error" in record.getMessage() for record in caplog.records)


def test_skips_are_counted_across_worker_processes(make_shards):
    broken = video_sample("broken_w")
    broken.media = b"not an mp4 at all"
    shards = make_shards("corrupt_workers", [[video_sample("w_a", seed=4)], [broken]])
    module = VideoDataModule([str(p) for p in shards], SMALL_BUCKETS, batch_size=1, resampled=False, num_workers=2)
    assert [k for b in collect(module.train_dataloader()) for k in b["key"]] == ["w_a"]
    assert module.skipped == Counter({"decode_error": 1})


def test_metadata_filters_apply_at_load_time(make_shards):
    samples = [video_sample(f"m{i}", seed=i, motion_score=score, aesthetic_score=aesthetic)
               for i, (score, aesthetic) in enumerate([(0.001, 6.0), (0.2, 6.0), (0.9, 6.0), (0.2, 3.0), (0.2, None)])]
    shards = make_shards("filters", [samples])
    filters = {"min_motion_score": 0.01, "max_motion_score": 0.5, "min_aesthetic_score": 4.5, "keep_unscored": False}
    module = VideoDataModule(str(shards[0]), SMALL_BUCKETS, batch_size=1, resampled=False, num_workers=0, filters=filters)
    assert [k for b in collect(module.train_dataloader()) for k in b["key"]] == ["m1"]
    assert module.skipped == Counter({"below_min_motion_score": 1, "above_max_motion_score": 1,
                                      "below_min_aesthetic_score": 1, "unscored_aesthetic_score": 1})
    with pytest.raises(ValueError, match="valid filters: min_aesthetic_score"):
        VideoDataModule(str(shards[0]), SMALL_BUCKETS, batch_size=1, filters={"min_sharpness": 1})


def test_clips_too_short_for_every_bucket_are_counted(make_shards):
    shards = make_shards("short", [[video_sample("short", num_frames=5), video_sample("long", num_frames=17)]])
    module = VideoDataModule(str(shards[0]), [[9, 64, 64]], batch_size=1, resampled=False, num_workers=0)
    assert [k for b in collect(module.train_dataloader()) for k in b["key"]] == ["long"]
    assert module.skipped == Counter({"no_fitting_bucket": 1})


def test_a_resampled_dataset_that_never_batches_fails_instead_of_spinning(make_shards):
    shards = make_shards("never", [[video_sample("too_short", num_frames=5)]])
    module = VideoDataModule(str(shards[0]), [[9, 64, 64]], batch_size=1, num_workers=0, max_consecutive_skips=50)
    with pytest.raises(RuntimeError, match=r"50 samples in a row were skipped \(\{'no_fitting_bucket': 50\}\)"):
        collect(module.train_dataloader())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.buckets=[[16,64,64]]", r"frames must be of the form 8k\+1"),
        ("data.buckets=[[9,100,64]]", "height must be a positive multiple of 32"),
        ("data.buckets=[[9,64,200]]", "width must be a positive multiple of 32"),
        ("data.batch_size=0", "data.batch_size must be a positive integer"),
    ],
)
def test_bad_data_config_fails_at_start_up_naming_the_rule(override, message, demo_dir):
    cfg = compose_config("train_vae", [override, f"data.train_shards={demo_dir / 'shards'}"])
    with pytest.raises(InstantiationException, match=message):
        instantiate(cfg.data)


def test_shard_patterns_expand_and_missing_shards_are_explained(exact_shards):
    directory = exact_shards[0].parent
    assert expand_shards(str(directory)) == [str(p) for p in exact_shards]
    assert expand_shards(str(directory / "exact-{000000..000002}.tar")) == [str(p) for p in exact_shards[:3]]
    assert expand_shards([str(directory / "*-000001.tar"), str(exact_shards[1])]) == [str(exact_shards[1])]
    with pytest.raises(ValueError, match="no shards match .*make data"):
        expand_shards(str(directory / "missing-*.tar"))
    module = VideoDataModule(str(directory / "exact-00000[01].tar"), SMALL_BUCKETS, batch_size=1, resampled=False,
                             num_workers=2, rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"2 shard\(s\) for 2 rank\(s\) x 2 worker\(s\)"):
        module.train_dataloader()


def test_validation_passes_are_identical(demo_dir):
    module = VideoDataModule(str(demo_dir / "shards"), [[9, 64, 64], [17, 64, 64], [1, 64, 64]], batch_size=2,
                             val_shards=str(demo_dir / "val"), num_workers=0)
    loader = module.val_dataloader()
    first, second = list(loader), list(loader)
    assert [b["key"] for b in first] == [b["key"] for b in second]
    for a, b in zip(first, second):
        assert torch.equal(a["video"], b["video"])


def _two_epochs(module: VideoDataModule) -> list[dict]:
    loader = module.train_dataloader()
    return list(loader) + list(loader)


def test_decode_cache_gives_the_same_batches_and_decodes_each_clip_once(exact_shards, monkeypatch):
    import ltx.data.pipeline as pipeline

    calls: Counter[str] = Counter()
    decode = pipeline.decode_frames

    def counted(data, indices):
        calls[len(list(indices))] += 1
        return decode(data, indices)

    monkeypatch.setattr(pipeline, "decode_frames", counted)

    def module(cache_mb: float) -> VideoDataModule:
        return VideoDataModule(str(exact_shards[0].parent), SMALL_BUCKETS, batch_size=2, resampled=False,
                               num_workers=0, seed=3, decode_cache_mb=cache_mb)

    plain = _two_epochs(module(0))
    uncached_calls = sum(calls.values())
    calls.clear()
    cached = _two_epochs(module(64))
    assert [b["key"] for b in cached] == [b["key"] for b in plain]
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(cached, plain))
    assert uncached_calls == 2 * 16  # 16 videos, decoded in both epochs without the cache
    assert sum(calls.values()) == 16  # with it: each video once (all its frames), windows cut from memory
    calls.clear()
    tiny = _two_epochs(module(0.25))  # room for a clip or two only: the rest are decoded per use, same batches
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(tiny, plain))
    assert 16 < sum(calls.values()) < 2 * 16


def test_negative_decode_cache_is_refused(exact_shards):
    with pytest.raises(ValueError, match="decode_cache_mb must be >= 0"):
        VideoDataModule(str(exact_shards[0].parent), SMALL_BUCKETS, batch_size=2, decode_cache_mb=-1)


def _keys_by_group(exact_shards, weights, seed=5, batches=60) -> tuple[float, list[str]]:
    directory = exact_shards[0].parent
    groups = [str(directory / "exact-00000{0,1}.tar"), str(directory / "exact-00000{2..7}.tar")]
    module = VideoDataModule(groups, SMALL_BUCKETS, batch_size=2, num_workers=0, seed=seed,
                             batches_per_epoch=batches, shard_weights=weights)
    keys = [key for batch in module.train_dataloader() for key in batch["key"]]
    first_group = {f"s{s}_{k}" for s in (0, 1) for k in ("v0", "v1", "img")}
    return sum(key in first_group for key in keys) / len(keys), keys


def test_shard_weights_set_each_entrys_share_of_the_draws(exact_shards):
    share, keys = _keys_by_group(exact_shards, [0.9, 0.1])
    assert share > 0.75  # 2 of 8 shards, 25 % without weights
    share_unweighted, _ = _keys_by_group(exact_shards, None)
    assert share_unweighted < 0.45
    share_reversed, _ = _keys_by_group(exact_shards, [0.0, 1.0])
    assert share_reversed == 0.0  # weight 0: never drawn
    assert _keys_by_group(exact_shards, [0.9, 0.1])[1] == keys  # a function of the seed
    assert _keys_by_group(exact_shards, [0.9, 0.1], seed=6)[1] != keys


@pytest.mark.parametrize(("weights", "resampled", "message"), [
    ([1.0], True, r"1 weight\(s\) for 2 data.train_shards entries"),
    ([1.0, -1.0], True, "finite, >= 0 and not all 0"),
    ([0.0, 0.0], True, "finite, >= 0 and not all 0"),
    ([1.0, 1.0], False, "needs data.resampled=true"),
])
def test_bad_shard_weights_are_refused(exact_shards, weights, resampled, message):
    with pytest.raises(ValueError, match=message):
        VideoDataModule([str(exact_shards[0]), str(exact_shards[1])], SMALL_BUCKETS, batch_size=2,
                        resampled=resampled, shard_weights=weights)
