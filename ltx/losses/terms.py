"""A weighted sum of named loss terms, each a registered loss chosen by name in the config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ltx.registry import LOSSES

TERM_KEYS = {"name", "weight", "kwargs", "inputs"}


class WeightedLossTerms(nn.Module):
    """``total = sum_i weight_i * loss_i(*inputs)`` over the configured terms.

    Config (the ``terms`` of a ``loss`` group)::

        reconstruction: {name: mse, weight: 1.0}
        kl: {name: kl, weight: 1.0e-6, inputs: posterior}
        perceptual: {name: lpips, weight: 0.1, kwargs: {backbone_path: /weights/vgg16.pth}}

    ``inputs`` names which arguments a term takes (``prediction``: prediction vs target, the default;
    ``posterior``: mean and log-variance; a stage documents what it provides). ``forward`` receives
    the arguments by input kind and returns the total and each term's unweighted value (for logging).
    Terms with weight 0 are neither built nor computed.
    """

    def __init__(self, terms: Mapping[str, Mapping[str, Any]], default_inputs: str = "prediction"):
        super().__init__()
        self.terms = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        self.input_kinds: dict[str, str] = {}
        for term, spec in terms.items():
            unknown = set(spec) - TERM_KEYS
            if "name" not in spec or unknown:
                raise ValueError(f"loss term {term!r} must have keys name, weight and optionally kwargs, inputs; "
                                 f"got {sorted(spec)}")
            weight = float(spec.get("weight", 1.0))
            if weight == 0.0:
                continue
            self.terms[term] = LOSSES.build(spec["name"], **dict(spec.get("kwargs") or {}))
            self.weights[term] = weight
            self.input_kinds[term] = spec.get("inputs") or default_inputs
        if not self.terms:
            raise ValueError("the loss config names no term with a non-zero weight; give at least one {name, weight}")

    def forward(self, inputs: Mapping[str, tuple[Any, ...] | Mapping[str, Any]],
                scales: Mapping[str, float] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``scales`` multiply terms' weights for this call (a schedule, e.g. a KL warm-up); others keep 1."""
        scales = dict(scales or {})
        unknown = set(scales) - set(self.terms)
        if unknown:
            raise KeyError(f"scales name loss term(s) {sorted(unknown)} that are not built; built: {', '.join(self.terms)}")
        missing = {term: kind for term, kind in self.input_kinds.items() if kind not in inputs}
        if missing:
            raise KeyError(f"loss term(s) {missing} need inputs this stage does not provide; it provides: "
                           f"{', '.join(sorted(inputs))}")
        total: torch.Tensor | None = None
        values: dict[str, torch.Tensor] = {}
        for term, loss in self.terms.items():
            args = inputs[self.input_kinds[term]]
            values[term] = loss(**args) if isinstance(args, Mapping) else loss(*args)
            weighted = self.weights[term] * scales.get(term, 1.0) * values[term]
            total = weighted if total is None else total + weighted
        return total, values
