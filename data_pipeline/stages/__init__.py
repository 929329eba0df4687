"""Curation stages, each registered by name in ltx.registry.CURATION_STAGES (imported on first lookup)."""

from data_pipeline.stages import aesthetic, caption, letterbox, motion, probe, scenes

__all__ = ["aesthetic", "caption", "letterbox", "motion", "probe", "scenes"]
