"""GAN objectives for the VAE: LTX-Video's reconstruction GAN (``rgan``) and the standard GAN (``gan``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ltx.registry import LOSSES

GAN_LOSS_TYPES = ("hinge", "non_saturating")


def discriminator_loss_from_scores(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, loss_type: str
) -> torch.Tensor:
    """Discriminator loss from its scores (logits: high = "original") on real and fake inputs.

    hinge: ``0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))``; non_saturating (binary cross-entropy
    with logits): ``0.5 * (mean(softplus(-real)) + mean(softplus(fake)))``.
    """
    if loss_type == "hinge":
        return 0.5 * (F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean())
    return 0.5 * (F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean())


def generator_loss_from_scores(fake_scores: torch.Tensor, loss_type: str) -> torch.Tensor:
    """Generator loss from the discriminator's scores on fakes.

    hinge: ``-mean(fake)``; non_saturating: ``mean(softplus(-fake))``.
    """
    if loss_type == "hinge":
        return -fake_scores.mean()
    return F.softplus(-fake_scores).mean()


@contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[None]:
    """Temporarily set ``requires_grad=False`` on the trainable parameters of ``module`` (restored on exit).

    Autograd records what requires grad when the forward runs, so a discriminator called inside this
    block passes gradients to its input but accumulates none in its own weights, as Lightning's
    ``toggle_optimizer`` does.
    """
    trainable = [parameter for parameter in module.parameters() if parameter.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


class GANObjective(nn.Module, ABC):
    """Shared interface of the GAN objectives: discriminator and generator losses given a discriminator.

    ``discriminator_loss`` detaches ``fake`` so only the discriminator learns from it;
    ``generator_loss`` runs the discriminator with frozen parameters (``frozen_parameters``) so only
    the generator (through ``fake``) receives gradients. ``discriminator`` must be an ``nn.Module``
    whose output (a logit map) has the batch size first. The ``generator`` arguments are
    ``torch.Generator``s for the random pair order of ``rgan`` (torch's name, not the GAN's generator).
    """

    channel_multiplier = 1

    def __init__(self, loss_type: str = "hinge"):
        super().__init__()
        if loss_type not in GAN_LOSS_TYPES:
            raise ValueError(
                f"unknown GAN loss_type {loss_type!r}. Valid loss types: {', '.join(GAN_LOSS_TYPES)}."
            )
        self.loss_type = loss_type

    def discriminator_in_channels(self, image_channels: int) -> int:
        """How many input channels the discriminator needs for videos with ``image_channels`` channels."""
        return self.channel_multiplier * image_channels

    @abstractmethod
    def scores(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
        order: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator's scores (high = "original") for the real and for the fake inputs. ``order``
        `(B,)` bool is for objectives that pair the inputs (True = original first); when None it is
        drawn from ``generator``."""

    def discriminator_loss(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
        order: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of the discriminator; ``fake`` is detached, so the generator gets no gradient from it."""
        _check_pair(real, fake)
        real_scores, fake_scores = self.scores(discriminator, real.detach(), fake.detach(), generator, order)
        return discriminator_loss_from_scores(real_scores, fake_scores, self.loss_type)

    def generator_loss(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
        order: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Adversarial loss of the generator; gradients reach ``fake`` but not the discriminator's weights."""
        _check_pair(real, fake)
        with frozen_parameters(discriminator):
            _, fake_scores = self.scores(discriminator, real.detach(), fake, generator, order)
        return generator_loss_from_scores(fake_scores, self.loss_type)

    def forward(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        mode: str = "generator",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if mode == "generator":
            return self.generator_loss(discriminator, real, fake, generator)
        if mode == "discriminator":
            return self.discriminator_loss(discriminator, real, fake, generator)
        raise ValueError(f"unknown GAN loss mode {mode!r}. Valid modes: discriminator, generator.")


@LOSSES.register("gan")
class StandardGANLoss(GANObjective):
    """Standard GAN: the discriminator scores one sample at a time, original or reconstruction."""

    def scores(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
        order: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return discriminator(real), discriminator(fake)

    def generator_loss(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
        order: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Adversarial loss of the generator; only ``fake`` is scored (``real`` is not needed here)."""
        _check_pair(real, fake)
        with frozen_parameters(discriminator):
            fake_scores = discriminator(fake)
        return generator_loss_from_scores(fake_scores, self.loss_type)


@LOSSES.register("rgan")
class ReconstructionGANLoss(GANObjective):
    """Reconstruction GAN of LTX-Video: the discriminator sees a sample and its reconstruction together.

    arXiv 2501.00103, sec. 3.1: instead of judging one input, the discriminator receives the original
    and the reconstruction OF THE SAME SAMPLE concatenated along channels, in a random order per
    sample, and predicts which one is the original. Its logit ``d`` means "the first half is the
    original"; with ``s = +1`` when the original is first and ``-1`` otherwise, the score of the
    original is ``s * d`` and that of the reconstruction ``-s * d``, which plug into the usual hinge /
    non-saturating losses (the discriminator loss is then ``mean(relu(1 - s d))`` or
    ``mean(softplus(-s d))``, the generator's ``mean(s d)`` or ``mean(softplus(s d))``).
    """

    channel_multiplier = 2

    def pair_inputs(
        self, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None,
        order: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator input ``(B, 2C, ...)`` and which samples have the original first, ``(B,)`` bool.

        The order is drawn per sample from ``generator`` (on its own device), or from the global RNG
        of ``real``'s device when none is given, unless ``order`` gives it.
        """
        _check_pair(real, fake)
        if order is None:
            device = generator.device if generator is not None else real.device
            order = torch.rand(real.shape[0], generator=generator, device=device) < 0.5  # (B,)
        elif order.shape != real.shape[:1] or order.dtype != torch.bool:
            raise ValueError(f"order must be ({real.shape[0]},) bool, got {tuple(order.shape)} {order.dtype}")
        real_first = order.to(real.device)  # (B,)
        first_mask = real_first.view(-1, *([1] * (real.ndim - 1)))  # (B, 1, ...)
        first, second = torch.where(first_mask, real, fake), torch.where(first_mask, fake, real)  # (B, C, ...) each
        return torch.cat([first, second], dim=1), real_first  # (B, 2C, ...), (B,)

    def scores(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
        order: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, real_first = self.pair_inputs(real, fake, generator, order)  # (B, 2C, ...), (B,)
        logits = discriminator(inputs)  # (B, 1, ...): "the first half is the original"
        if logits.shape[0] != real.shape[0]:
            raise ValueError(
                f"the discriminator must keep the batch size {real.shape[0]}; got {tuple(logits.shape)}"
            )
        sign = real_first.to(logits.dtype).mul(2.0).sub(1.0)  # (B,) +1 original first, -1 otherwise
        real_scores = sign.view(-1, *([1] * (logits.ndim - 1))) * logits  # (B, 1, ...)
        return real_scores, -real_scores


def adaptive_gan_weight(
    reconstruction_loss: torch.Tensor,
    generator_loss: torch.Tensor,
    last_layer_weight: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VQGAN's adaptive weight of the adversarial term: ``|grad L_rec| / (|grad L_gan| + eps)``, detached.

    Esser et al., "Taming Transformers" (arXiv 2012.09841), eq. 7: both gradients are taken with respect
    to the weight of the decoder's last layer, so the GAN term is scaled to pull about as hard as the
    reconstruction losses whatever their magnitudes. Clamped to ``[0, max_weight]`` and detached: it is
    a coefficient, not a term to differentiate. Both losses must depend on ``last_layer_weight``
    (the graphs are kept, ``retain_graph=True``, for the backward pass that follows).
    """
    (reconstruction_grad,) = torch.autograd.grad(reconstruction_loss, last_layer_weight, retain_graph=True)
    (generator_grad,) = torch.autograd.grad(generator_loss, last_layer_weight, retain_graph=True)
    weight = reconstruction_grad.norm() / (generator_grad.norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape; got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
