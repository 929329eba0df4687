"""Losses, each registered by name in ``ltx.registry.LOSSES``, and their weighted combination."""

from ltx.losses.reconstruction import L1Loss, MSELoss
from ltx.losses.terms import WeightedLossTerms

__all__ = ["L1Loss", "MSELoss", "WeightedLossTerms"]
