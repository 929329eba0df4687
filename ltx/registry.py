"""One small typed registry for every swappable component, extensible through entry points.

Configs name components (``rope_spacing: exponential``); code turns names into objects with
``REGISTRY.build(name, **kwargs)``. Built-in entries are registered by the modules listed in each
registry's ``builtin_modules`` (imported on first lookup, which keeps start-up cheap and avoids
import cycles). Third-party packages add entries through the entry-point group ``ltx.plugins``::

    # the plugin's pyproject.toml
    [project.entry-points."ltx.plugins"]
    my_plugin = "my_package.ltx_plugin"            # a module whose import registers entries
    # or: my_plugin = "my_package.ltx_plugin:register"   (a function called with no arguments)

Plugins are loaded lazily, once, on the first lookup in any registry. ``python -m ltx.registry``
prints every registry and its entries.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

PLUGIN_GROUP = "ltx.plugins"

T = TypeVar("T")
log = logging.getLogger(__name__)


class RegistryError(LookupError):
    """A name that is not in a registry, or a registration that conflicts with an existing one."""


@dataclass
class PluginLoadReport:
    """Which entry points of ``ltx.plugins`` loaded, and which failed with what error."""

    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


_REGISTRIES: dict[str, Registry[Any]] = {}
_plugin_report: PluginLoadReport | None = None


def load_plugins(reload: bool = False) -> PluginLoadReport:
    """Load every ``ltx.plugins`` entry point once (again with ``reload=True``).

    A plugin that fails to import is reported with a warning and listed in lookup errors; it does not
    stop the built-in components from working.
    """
    global _plugin_report
    if _plugin_report is not None and not reload:
        return _plugin_report
    report = PluginLoadReport()
    _plugin_report = report  # set first: a plugin may itself look names up while it loads
    for entry_point in metadata.entry_points(group=PLUGIN_GROUP):
        label = f"{entry_point.name} ({entry_point.value})"
        try:
            loaded = entry_point.load()
            if callable(loaded) and not isinstance(loaded, types.ModuleType):
                loaded()
        except Exception as error:  # a broken plugin must not take the framework down
            report.failed[label] = f"{type(error).__name__}: {error}"
            log.warning("ltx plugin %s failed to load: %s", label, report.failed[label])
        else:
            report.loaded.append(label)
    return report


class Registry(Generic[T]):
    """Maps short stable names to factories (classes or functions) that build a ``T``.

    Args:
        kind: what the entries are, used in messages ("loss", "rope spacing").
        base: when given, ``build`` checks that what a factory returns is an instance of it.
        builtin_modules: modules whose import registers the built-in entries.
    """

    def __init__(self, kind: str, base: type | None = None, builtin_modules: tuple[str, ...] = ()):
        if kind in _REGISTRIES:
            raise RegistryError(f"a registry of kind {kind!r} already exists")
        self.kind = kind
        self.base = base
        self.builtin_modules = builtin_modules
        self._factories: dict[str, Callable[..., T]] = {}
        self._builtins_loaded = False
        _REGISTRIES[kind] = self

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Pickled by reference (e.g. with a `python -m ltx.cli.train` main function that submitit sends to
        # SLURM by value): the receiving process uses its own registry, which its imports fill.
        return get_registry, (self.kind,)

    def register(self, name: str, *, override: bool = False) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a class or factory function under ``name``."""
        if not name or not isinstance(name, str):
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if not callable(factory):
                raise RegistryError(f"{self.kind} {name!r}: only classes or functions can be registered")
            if self.base is not None and inspect.isclass(factory) and not issubclass(factory, self.base):
                raise RegistryError(
                    f"{self.kind} {name!r}: {factory.__qualname__} is not a subclass of {self.base.__qualname__}"
                )
            existing = self._factories.get(name)
            if existing is not None and existing is not factory and not override:
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered by {_origin(existing)}; "
                    f"pick another name or pass override=True"
                )
            self._factories[name] = factory
            return factory

        return decorator

    def _ensure_loaded(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self.builtin_modules:
                importlib.import_module(module)
        load_plugins()

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``; an unknown name raises listing the valid ones."""
        self._ensure_loaded()
        try:
            return self._factories[name]
        except KeyError:
            raise RegistryError(self._unknown_message(name)) from None

    def build(self, name: str, **kwargs: Any) -> T:
        """Call the factory registered under ``name`` with ``kwargs``."""
        obj = self.get(name)(**kwargs)
        if self.base is not None and not isinstance(obj, self.base):
            raise RegistryError(
                f"{self.kind} {name!r} built a {type(obj).__qualname__}, expected a {self.base.__qualname__}"
            )
        return obj

    def names(self) -> list[str]:
        """Sorted names of every entry, built-in and from plugins."""
        self._ensure_loaded()
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def describe(self, name: str) -> str:
        """``module.qualname`` of an entry and the first line of its docstring."""
        factory = self.get(name)
        doc = (inspect.getdoc(factory) or "").split("\n", 1)[0]
        return f"{_origin(factory)}{' - ' + doc if doc else ''}"

    def _unknown_message(self, name: str) -> str:
        valid = ", ".join(sorted(self._factories)) or "(none registered)"
        message = f"unknown {self.kind} {name!r}. Valid names: {valid}."
        report = _plugin_report
        if report is not None and report.failed:
            failed = "; ".join(f"{label}: {error}" for label, error in report.failed.items())
            message += f" Plugins that failed to load: {failed}."
        return message

    def __repr__(self) -> str:
        return f"Registry(kind={self.kind!r}, entries={sorted(self._factories)})"


def _origin(factory: Callable[..., Any]) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


def registries() -> dict[str, Registry[Any]]:
    """Every registry by kind."""
    return dict(_REGISTRIES)


def get_registry(kind: str) -> Registry[Any]:
    """The registry of ``kind``; an unknown kind raises listing the valid ones."""
    try:
        return _REGISTRIES[kind]
    except KeyError:
        raise RegistryError(f"unknown registry {kind!r}. Valid registries: {', '.join(sorted(_REGISTRIES))}.") from None


# The registries. Each names the modules that register its built-in entries; later stages add
# modules here as they land. Bases are checked where a common type exists.
def _torch_module() -> type:
    import torch.nn

    return torch.nn.Module


LOSSES: Registry[Any] = Registry("loss", base=_torch_module(), builtin_modules=("ltx.losses",))
DISCRIMINATORS: Registry[Any] = Registry(
    "discriminator", base=_torch_module(), builtin_modules=("ltx.losses.discriminators",)
)
POSITION_SCHEMES: Registry[Any] = Registry("position scheme", builtin_modules=("ltx.positional.coordinates",))
ROPE_SPACINGS: Registry[Any] = Registry("rope spacing", builtin_modules=("ltx.positional.rope",))
TIMESTEP_SAMPLERS: Registry[Any] = Registry("timestep sampler", builtin_modules=("ltx.diffusion.timesteps",))
SAMPLERS: Registry[Any] = Registry("sampler", builtin_modules=("ltx.sampling.euler",))
CONDITIONING_MODES: Registry[Any] = Registry("conditioning mode", builtin_modules=("ltx.diffusion.conditioning_modes",))
TEXT_ENCODERS: Registry[Any] = Registry("text encoder", builtin_modules=("ltx.text.encoders",))
LR_SCHEDULES: Registry[Any] = Registry("lr schedule", builtin_modules=("ltx.training.schedules",))
VAE_INITS: Registry[Any] = Registry("vae init", builtin_modules=("ltx.training.vae_init",))
TRAINING_STAGES: Registry[Any] = Registry("training stage", builtin_modules=("ltx.training.vae_module", "ltx.training.dit_module"))
CURATION_STAGES: Registry[Any] = Registry("curation stage", builtin_modules=("data_pipeline.stages",))
CAPTIONERS: Registry[Any] = Registry("captioner", builtin_modules=("data_pipeline.captioners",))


def format_registries() -> str:
    """Human-readable listing of every registry, its entries and the plugin load status."""
    lines: list[str] = []
    for kind, registry in sorted(_REGISTRIES.items()):
        names = registry.names()
        lines.append(f"{kind} ({len(names)})")
        lines.extend(f"  {name:<24} {registry.describe(name)}" for name in names)
        if not names:
            lines.append("  (no entries yet)")
    report = load_plugins()
    lines.append(f"plugins from entry-point group {PLUGIN_GROUP!r}:")
    lines.extend(f"  loaded  {label}" for label in report.loaded)
    lines.extend(f"  FAILED  {label}: {error}" for label, error in report.failed.items())
    if not report.loaded and not report.failed:
        lines.append("  (none installed)")
    return "\n".join(lines)


def main() -> None:
    print(format_registries())


if __name__ == "__main__":
    # Under `python -m` this file runs as `__main__`; built-in modules register into the importable
    # `ltx.registry`, so print that module's registries rather than this copy's.
    from ltx.registry import main as registry_main

    registry_main()
