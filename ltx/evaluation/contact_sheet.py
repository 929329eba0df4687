"""A contact sheet: one row per video, a text label on the left and groups of frames to its right."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ltx.evaluation.demo_world import video_frames

PADDING = 4  # pixels around every tile and between rows
GROUP_GAP = 12  # pixels between two groups of frames in one row (e.g. original | reconstruction)
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)


@dataclass(frozen=True)
class SheetRow:
    """One row: ``label`` (wrapped to the label column; newlines start new lines) and groups of `(H, W, 3)`
    uint8 frames, drawn left to right with a gap between groups."""

    label: str
    groups: Sequence[Sequence[np.ndarray]]


def evenly_spaced_frames(video: torch.Tensor | np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` evenly spaced frames (first and last included) of a video in a layout ``video_frames``
    reads, as `(H, W, 3)` uint8; all frames when it has fewer."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    frames = video_frames(video)  # (F, H, W, 3)
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return [frames[index] for index in picks]


def row_height(tile_height: int) -> int:
    """The height in pixels of every row of a sheet with ``tile_height``-pixel frames."""
    return tile_height + 2 * PADDING


def _wrap(text: str, font: ImageFont.ImageFont, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _tile(frame: np.ndarray, tile_height: int) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(frame))
    width = max(1, round(image.width * tile_height / image.height))
    return image if image.height == tile_height else image.resize((width, tile_height), Image.Resampling.BILINEAR)


def render_contact_sheet(rows: Sequence[SheetRow], tile_height: int = 64, label_width: int = 360) -> Image.Image:
    """An RGB image of ``len(rows) * row_height(tile_height)`` pixels' height: every frame scaled to
    ``tile_height`` pixels high (aspect kept), labels in the default font (lines that do not fit the row
    are cut, the last one ending in "...")."""
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    if not isinstance(tile_height, int) or tile_height < 8 or not isinstance(label_width, int) or label_width < 32:
        raise ValueError(f"tile_height must be an int >= 8 and label_width an int >= 32; got {tile_height!r}, "
                         f"{label_width!r}")
    tiles = [[[_tile(frame, tile_height) for frame in group] for group in row.groups] for row in rows]
    widths = [sum(tile.width + PADDING for group in row for tile in group) + GROUP_GAP * max(0, len(row) - 1)
              for row in tiles]
    height = row_height(tile_height)
    sheet = Image.new("RGB", (label_width + max(widths) + PADDING, height * len(rows)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    line_height = font.getbbox("Ag")[3] + 2
    max_lines = max(1, (height - PADDING) // line_height)
    for index, (row, row_tiles) in enumerate(zip(rows, tiles)):
        top = index * height
        lines = _wrap(row.label, font, label_width - 2 * PADDING, draw)
        if len(lines) > max_lines:
            lines = lines[: max_lines - 1] + [lines[max_lines - 1] + " ..."]
        for number, line in enumerate(lines):
            draw.text((PADDING, top + PADDING + number * line_height), line, fill=TEXT_COLOUR, font=font)
        left = label_width
        for group in row_tiles:
            for tile in group:
                sheet.paste(tile, (left, top + PADDING))
                left += tile.width + PADDING
            left += GROUP_GAP
    return sheet


def write_contact_sheet(rows: Sequence[SheetRow], path: Path, tile_height: int = 64, label_width: int = 360) -> Path:
    """``render_contact_sheet`` saved as PNG at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    render_contact_sheet(rows, tile_height, label_width).save(path, format="PNG")
    return path
