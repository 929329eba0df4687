"""Scale-out for the trained models: activation checkpointing, ``torch.compile`` and FSDP2
(``torch.distributed.fsdp.fully_shard``) per block, then the root, with a mixed-precision policy.

Used by the stages' ``configure_model``: with Lightning's ``ModelParallelStrategy`` (``trainer=fsdp``)
they pass its data-parallel device mesh and every block is sharded; with any other strategy (single
device, ``trainer=ddp``) activation checkpointing and compilation still apply and nothing is sharded.
The order follows torchtitan: checkpoint wrappers, then compilation, then sharding.

State-dict names do not change: checkpoint wrappers strip their prefix from state dicts and
``nn.Module.compile`` compiles in place, so checkpoints, EMA copies and diffusers exports keep the
diffusers names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from ltx.models.dit import VideoTransformer
from ltx.models.vae import VideoAutoencoder

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ParallelSettings:
    """The ``parallel`` block of a training config.

    ``param_dtype`` / ``reduce_dtype`` form FSDP2's mixed-precision policy (used only when sharding):
    parameters are all-gathered and computed in ``param_dtype`` (bf16 by default), gradients are
    reduce-scattered in ``reduce_dtype`` (fp32), and the sharded master weights and optimizer states
    stay fp32.
    """

    activation_checkpointing: bool = False  # recompute each block's activations in the backward pass
    compile: bool | str = False  # torch.compile each block in place: true (inductor) or a backend name
    param_dtype: str = "bfloat16"
    reduce_dtype: str = "float32"
    reshard_after_forward: bool = True  # free gathered parameters after forward (ZeRO-3); False = ZeRO-2

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None) -> ParallelSettings:
        values = dict(values or {})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown parallel setting(s) {unknown}; valid: {sorted(known)}")
        settings = cls(**values)
        if isinstance(settings.compile, str) and settings.compile not in torch._dynamo.list_backends(exclude_tags=()):
            raise ValueError(f"parallel.compile={settings.compile!r} is not a torch.compile backend; valid: true, false, "
                             f"{', '.join(torch._dynamo.list_backends(exclude_tags=()))}")
        for name in ("param_dtype", "reduce_dtype"):
            if getattr(settings, name) not in DTYPES:
                raise ValueError(f"parallel.{name}={getattr(settings, name)!r} is not one of {sorted(DTYPES)}")
        return settings

    def mixed_precision(self) -> MixedPrecisionPolicy:
        return MixedPrecisionPolicy(param_dtype=DTYPES[self.param_dtype], reduce_dtype=DTYPES[self.reduce_dtype])


# A "slot" is (parent module, attribute name): where a block lives, so it can be replaced by a wrapper.
Slot = tuple[nn.Module, str]


def _list_slots(modules: nn.ModuleList) -> list[Slot]:
    return [(modules, str(index)) for index in range(len(modules))]


def dit_blocks(model: VideoTransformer) -> list[Slot]:
    return _list_slots(model.transformer_blocks)


def vae_blocks(model: VideoAutoencoder) -> list[Slot]:
    encoder, decoder = model.encoder, model.decoder
    return [*_list_slots(encoder.down_blocks), (encoder, "mid_block"), (decoder, "mid_block"),
            *_list_slots(decoder.up_blocks)]


# Blocks (the units of checkpointing, compilation and sharding), intermediate sharding units that are
# called as submodules (so their FSDP hooks run), and methods other than forward that run the model.
BLOCKS: dict[type[nn.Module], Callable[[Any], list[Slot]]] = {VideoTransformer: dit_blocks, VideoAutoencoder: vae_blocks}
INTERMEDIATE_UNITS: dict[type[nn.Module], tuple[str, ...]] = {VideoAutoencoder: ("encoder", "decoder")}
FORWARD_METHODS: dict[type[nn.Module], tuple[str, ...]] = {
    VideoTransformer: ("forward_tokens",),
    VideoAutoencoder: ("encode", "decode"),
}


def _lookup(table: Mapping[type[nn.Module], Any], model: nn.Module, default: Any) -> Any:
    for kind, value in table.items():
        if isinstance(model, kind):
            return value
    return default


def block_slots(model: nn.Module) -> list[Slot]:
    """Where the model's blocks live; models without a known block structure have none (root only)."""
    finder = _lookup(BLOCKS, model, None)
    return finder(model) if finder is not None else []


def apply_activation_checkpointing(model: nn.Module) -> int:
    """Wrap every block so its activations are recomputed in backward (non-reentrant). Returns the count."""
    slots = block_slots(model)
    for parent, name in slots:
        setattr(parent, name, checkpoint_wrapper(getattr(parent, name), checkpoint_impl=CheckpointImpl.NO_REENTRANT))
    return len(slots)


def apply_compile(model: nn.Module, backend: str = "inductor") -> int:
    """``torch.compile`` every block in place (names unchanged) with ``backend``. Returns the count."""
    slots = block_slots(model)
    for parent, name in slots:
        getattr(parent, name).compile(backend=backend)
    return len(slots)


PROMOTED_SCALARS = "_promoted_scalar_parameters"


def promote_scalar_parameters(model: nn.Module) -> list[str]:
    """``fully_shard`` cannot shard 0-d parameters (e.g. the VAE decoder's ``timestep_scale_multiplier``):
    make them 1-d, which broadcasting keeps numerically identical. The names are recorded on ``model`` so
    ``full_state_dict`` gives them back their original shape (the diffusers layout)."""
    names = []
    for module_name, module in model.named_modules():
        for name, parameter in list(module.named_parameters(recurse=False)):
            if parameter.ndim == 0:
                setattr(module, name, nn.Parameter(parameter.detach().reshape(1), parameter.requires_grad))
                names.append(f"{module_name}.{name}" if module_name else name)
    setattr(model, PROMOTED_SCALARS, [*getattr(model, PROMOTED_SCALARS, []), *names])
    return names


def apply_fully_shard(model: nn.Module, mesh: DeviceMesh, settings: ParallelSettings) -> None:
    """FSDP2: shard each block, then the intermediate units, then the root (its leftover parameters)."""
    promote_scalar_parameters(model)
    options = {"mesh": mesh, "mp_policy": settings.mixed_precision(),
               "reshard_after_forward": settings.reshard_after_forward}
    for parent, name in block_slots(model):
        fully_shard(getattr(parent, name), **options)
    for name in _lookup(INTERMEDIATE_UNITS, model, ()):
        fully_shard(getattr(model, name), **options)
    fully_shard(model, **options)
    for method in _lookup(FORWARD_METHODS, model, ()):
        register_fsdp_forward_method(model, method)


def parallelize(model: nn.Module, settings: ParallelSettings, mesh: DeviceMesh | None = None,
                trained: bool = True) -> nn.Module:
    """Apply ``settings`` to ``model`` in place (and return it). ``mesh``: shard over it (FSDP2).
    ``trained=False`` (e.g. an EMA copy that is only averaged into) skips checkpointing and compilation."""
    if trained and settings.activation_checkpointing:
        apply_activation_checkpointing(model)
    if trained and settings.compile:
        apply_compile(model, "inductor" if settings.compile is True else settings.compile)
    if mesh is not None:
        apply_fully_shard(model, mesh, settings)
    return model


WRAPPER_NAME_PARTS = ("_checkpoint_wrapped_module.", "_orig_mod.")


def state_dict_name(parameter_name: str) -> str:
    """A parameter's name as the state dict spells it: without the activation-checkpointing and compile
    wrappers' levels (``named_parameters`` keeps them, the state dict does not)."""
    for part in WRAPPER_NAME_PARTS:
        parameter_name = parameter_name.replace(part, "")
    return parameter_name


def is_sharded(module: nn.Module) -> bool:
    return any(isinstance(parameter, DTensor) for parameter in module.parameters())


def local_tensors(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """This rank's shards of DTensors, other tensors as they are (for foreach updates)."""
    return [tensor.to_local() if isinstance(tensor, DTensor) else tensor for tensor in tensors]


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's complete state dict on CPU. Sharded modules are gathered: a collective, so every
    rank must call it; every rank gets the full tensors."""
    if not is_sharded(module):
        return {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
    state = get_model_state_dict(module, options=options)
    state = {name: (tensor.full_tensor() if isinstance(tensor, DTensor) else tensor).detach().cpu()
             for name, tensor in state.items()}
    for name in getattr(module, PROMOTED_SCALARS, []):
        state[name] = state[name].reshape(())
    return state
