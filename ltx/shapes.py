"""The video shape rule shared by the VAE and the data: F = 1 + 8k frames, H and W multiples of 32."""

from __future__ import annotations

TEMPORAL_COMPRESSION = 8
SPATIAL_COMPRESSION = 32


def check_video_shape(frames: int, height: int, width: int, what: str = "video") -> None:
    """Raise ValueError naming the rule unless F = 1 + 8k and H, W are positive multiples of 32."""
    problems = []
    if not isinstance(frames, int) or frames < 1 or (frames - 1) % TEMPORAL_COMPRESSION:
        problems.append(f"frames must be of the form 8k+1 (1, 9, 17, 25, ...), got {frames!r}")
    for name, size in (("height", height), ("width", width)):
        if not isinstance(size, int) or size < SPATIAL_COMPRESSION or size % SPATIAL_COMPRESSION:
            problems.append(f"{name} must be a positive multiple of 32, got {size!r}")
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))
