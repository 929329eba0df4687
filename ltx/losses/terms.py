"""A weighted sum of named loss terms, each a registered loss chosen by name in the config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ltx.registry import LOSSES


class WeightedLossTerms(nn.Module):
    """``total = sum_i weight_i * loss_i(*inputs_i)`` over the configured terms.

    Config (the ``loss`` group)::

        reconstruction: {name: mse, weight: 1.0}
        perceptual: {name: lpips, weight: 0.1, kwargs: {net: vgg}}

    ``forward`` takes the arguments of every term by term name and returns the total and the
    unweighted value of each term (for logging). Terms with weight 0 are not computed.
    """

    def __init__(self, terms: Mapping[str, Mapping[str, Any]]):
        super().__init__()
        if not terms:
            raise ValueError("the loss config names no terms; give at least one {name, weight}")
        self.terms = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for term, spec in terms.items():
            unknown = set(spec) - {"name", "weight", "kwargs"}
            if "name" not in spec or unknown:
                raise ValueError(f"loss term {term!r} must have keys name, weight and optionally kwargs; got {sorted(spec)}")
            self.terms[term] = LOSSES.build(spec["name"], **dict(spec.get("kwargs") or {}))
            self.weights[term] = float(spec.get("weight", 1.0))

    def forward(self, inputs: Mapping[str, tuple[Any, ...] | Mapping[str, Any]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        missing = [term for term, weight in self.weights.items() if weight and term not in inputs]
        if missing:
            raise KeyError(f"no inputs given for loss term(s) {missing}; inputs were given for {sorted(inputs)}")
        total: torch.Tensor | None = None
        values: dict[str, torch.Tensor] = {}
        for term, loss in self.terms.items():
            if not self.weights[term]:
                continue
            args = inputs[term]
            values[term] = loss(**args) if isinstance(args, Mapping) else loss(*args)
            weighted = self.weights[term] * values[term]
            total = weighted if total is None else total + weighted
        if total is None:
            raise ValueError("every loss term has weight 0")
        return total, values
