"""Summarise shards and, optionally, pull batches through the training data module.

``python -m ltx.data.inspect outputs/demo/shards --batches 4`` prints per-shard counts, what the
samples are (videos, images, durations, sizes, caption sources, scores) and, with ``--batches``, the
batch shapes per bucket the data config (``--data demo``) produces and every skipped sample by reason.
"""

from __future__ import annotations

import argparse
import tarfile
from collections import Counter
from pathlib import Path

from ltx.data.schema import MEDIA_EXTENSIONS, ClipMetadata, SchemaError


def summarize_shards(shards: list[str]) -> str:
    """Counts per shard and over all samples, read from the tar members and JSON only (no decoding)."""
    lines, media, caption_sources, problems = [], Counter(), Counter(), Counter()
    durations, sizes, scored = [], Counter(), Counter()
    for shard in shards:
        stats_marker = Path(shard).with_suffix(".stats.json")
        samples = 0
        with tarfile.open(shard) as tar:
            for member in tar:
                key, _, extension = member.name.partition(".")
                if extension in MEDIA_EXTENSIONS:
                    samples += 1
                    media[extension] += 1
                if extension != "json":
                    continue
                try:
                    meta = ClipMetadata.from_json(tar.extractfile(member).read())
                except SchemaError as error:
                    problems[str(error)[:120]] += 1
                    continue
                caption_sources[meta.caption_source] += 1
                sizes[f"{meta.width}x{meta.height}"] += 1
                durations.append(meta.duration_seconds)
                for name in ("motion_score", "aesthetic_score"):
                    scored[name] += getattr(meta, name) is not None
        marker = "complete" if stats_marker.exists() else "NO stats marker (incomplete?)"
        lines.append(f"  {Path(shard).name}: {samples} samples, {marker}")
    total = sum(media.values())
    video_seconds = sum(durations)
    header = [
        f"{len(shards)} shards, {total} samples: {media.get('mp4', 0)} videos ({video_seconds:.1f} s), {media.get('png', 0)} images",
        f"  sizes: {dict(sizes.most_common())}",
        f"  caption sources: {dict(caption_sources)}; scored: motion {scored['motion_score']}, aesthetic {scored['aesthetic_score']}",
    ]
    header += [f"  INVALID metadata x{count}: {message}" for message, count in problems.items()]
    return "\n".join(header + lines)


def summarize_batches(shards: str, data_config: str, num_batches: int) -> str:
    """Pull ``num_batches`` batches through the data module built from ``conf/data/<data_config>.yaml``."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from ltx.cli.train import CONFIG_DIR

    overrides = [f"data={data_config}", f"data.train_shards={shards}", f"data.batches_per_epoch={num_batches}"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train_vae", overrides=overrides)
    datamodule = instantiate(cfg.data)
    shapes: Counter = Counter()
    for batch in datamodule.train_dataloader():
        shapes[tuple(batch["video"].shape)] += 1
    lines = [f"data module (data={data_config}): {sum(shapes.values())} batches"]
    lines += [f"  video {shape} (B, C, F, H, W) x{count}" for shape, count in sorted(shapes.items())]
    lines.append(f"  skipped samples by reason: {dict(datamodule.skipped) or 'none'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", help="shard directory, glob or brace pattern")
    parser.add_argument("--batches", type=int, default=0, help="also pull this many batches through the data module")
    parser.add_argument("--data", default="demo", help="data config (conf/data/<name>.yaml) for --batches")
    args = parser.parse_args(argv)
    from ltx.data.datamodule import expand_shards

    print(summarize_shards(expand_shards(args.shards)))
    if args.batches:
        print(summarize_batches(args.shards, args.data, args.batches))


if __name__ == "__main__":
    main()
