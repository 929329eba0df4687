"""The typed registry: registration, lookup errors that list valid names, type checks, plugins."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ltx import registry as registry_module
from ltx.registry import LOSSES, Registry, RegistryError, format_registries, get_registry, registries


@pytest.fixture
def fresh_registry(request) -> Registry:
    kind = f"test thing {request.node.name}"
    created = Registry(kind, base=nn.Module)
    yield created
    registry_module._REGISTRIES.pop(kind)


def test_register_build_and_names(fresh_registry):
    @fresh_registry.register("double")
    class Double(nn.Module):
        def __init__(self, factor: float = 2.0):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    built = fresh_registry.build("double", factor=3.0)
    assert isinstance(built, Double) and built(torch.ones(1)).item() == 3.0
    assert fresh_registry.names() == ["double"]
    assert "double" in fresh_registry and "triple" not in fresh_registry


def test_unknown_name_lists_valid_names(fresh_registry):
    fresh_registry.register("alpha")(nn.Identity)
    fresh_registry.register("beta")(nn.ReLU)
    with pytest.raises(RegistryError, match=r"unknown test thing .* 'gamma'\. Valid names: alpha, beta\."):
        fresh_registry.build("gamma")


def test_duplicate_name_is_refused_unless_override(fresh_registry):
    fresh_registry.register("same")(nn.Identity)
    with pytest.raises(RegistryError, match="already registered"):
        fresh_registry.register("same")(nn.ReLU)
    fresh_registry.register("same", override=True)(nn.ReLU)
    assert isinstance(fresh_registry.build("same"), nn.ReLU)


def test_types_are_checked_at_registration_and_build(fresh_registry):
    with pytest.raises(RegistryError, match="not a subclass of Module"):
        fresh_registry.register("not_a_module")(dict)
    fresh_registry.register("factory_returning_wrong_type")(lambda: "a string")
    with pytest.raises(RegistryError, match="expected a Module"):
        fresh_registry.build("factory_returning_wrong_type")


def test_every_registry_is_listed_and_reachable_by_kind():
    listing = format_registries()
    for kind, registry in registries().items():
        assert get_registry(kind) is registry
        assert f"{kind} (" in listing
    assert "mse" in listing and "ltx.losses.reconstruction.MSELoss" in listing
    with pytest.raises(RegistryError, match="Valid registries: .*loss"):
        get_registry("no such registry")


def test_builtin_entries_load_on_first_lookup():
    assert {"mse", "l1"} <= set(LOSSES.names())


def test_registries_pickle_by_reference():
    import pickle

    import cloudpickle

    from ltx.registry import TRAINING_STAGES

    assert pickle.loads(pickle.dumps(TRAINING_STAGES)) is TRAINING_STAGES
    assert cloudpickle.loads(cloudpickle.dumps(TRAINING_STAGES)) is TRAINING_STAGES
