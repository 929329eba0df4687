"""``trainer=ddp`` for stages that train separate networks in separate backward passes, such as the VAE's
generator and its GAN discriminator: each backward all-reduces exactly the gradients its optimizer steps.

Lightning wraps the whole LightningModule in one ``DistributedDataParallel``. Its reducer expects a
gradient for every trainable parameter in every backward it is prepared for. The VAE stage runs a
generator backward (the discriminator runs with frozen weights) and a discriminator backward (on
detached reconstructions), and before ``loss.gan.start_step`` no discriminator at all. With one reducer
each pass leaves the other network's gradients missing, and DDP stops with "parameters that were not
used in producing the loss". The alternatives:

- ``find_unused_parameters=True`` works, but every backward then walks the autograd graph and
  all-reduces every bucket, zeros for the other network included: each discriminator step would
  all-reduce the whole VAE again.
- ``static_graph=True`` is wrong here: which parameters get gradients differs between the two passes
  and changes at ``start_step``.
- ``toggle_optimizer`` only switches ``requires_grad``; the reducer still waits for the frozen network.

So the LightningModule's DDP leaves such modules out (``_ddp_params_and_buffers_to_ignore``, which
Lightning honours when it syncs module states too) and each gets a DDP of its own, which the stage calls
for that module's own backward pass. A reducer that a backward gives no gradient at all (the module's DDP
in the generator pass, the LightningModule's in the discriminator pass) launches nothing and needs no
finalising, so it does not complain; a network that has not joined yet costs nothing. Gradients are
averaged over ranks, as DDP does, so all replicas take the same step.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def ddp_strategy(trainer: Any) -> DDPStrategy | None:
    """The trainer's strategy when it is (a subclass of) Lightning's DDP, else None."""
    strategy = getattr(trainer, "strategy", None) if trainer is not None else None
    return strategy if isinstance(strategy, DDPStrategy) else None


def leave_out_of_module_ddp(root: nn.Module, names: Iterable[str]) -> list[str]:
    """Mark the parameters and buffers of ``root``'s submodules ``names`` to be ignored by the DDP that
    Lightning wraps ``root`` in (call it before the wrap, e.g. in ``configure_model``). Returns the names."""
    ignored = [f"{name}.{key}" for name in names
               for key, _ in chain(getattr(root, name).named_parameters(), getattr(root, name).named_buffers())]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(root, ignored)
    return ignored


def own_ddp(module: nn.Module, strategy: DDPStrategy) -> DistributedDataParallel:
    """``module`` in a DDP of its own on the strategy's device and process group (all ranks must call it:
    it broadcasts rank 0's weights). Its ``state_dict`` names gain ``module.``; keep it out of the
    LightningModule's attributes that hold modules, so checkpoints keep their layout."""
    return DistributedDataParallel(module, device_ids=strategy.determine_ddp_device_ids())
