"""Euler sampler for rectified flow with classifier-free guidance and frame conditioning (LTX-Video
inference: text-to-video, image-to-video, video extension and keyframes through per-token timesteps)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ltx.registry import SAMPLERS
from ltx.sampling.schedule import flow_timesteps

VelocityModel = Callable[..., torch.Tensor]  # (latents, timestep, text, text_mask, fps) -> velocity


def _parameter_dtype(module: object, default: torch.dtype) -> torch.dtype:
    """The dtype of a module's first floating-point parameter (``default`` for plain callables)."""
    if isinstance(module, nn.Module):
        for parameter in module.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
    return default


def _randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard-normal draws on the generator's device (CPU without one), moved to ``device``, so a seeded
    CPU generator gives the same samples whatever device sampling runs on."""
    draw_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=draw_device).to(device)


@dataclass
class FrameConditioning:
    """Clean latents for some latent frames (image-to-video, extension, keyframes) or tokens (inpainting,
    outpainting: ``ltx.diffusion.conditioning_modes``).

    ``latents (B, C, F, H, W)``: clean, normalised latents (``vae.normalize_latents``), read only where
    ``frames`` (bool) is true: ``(B, F)`` for whole latent frames, or ``(B, F, H, W)`` per token. ``noise_scale``: the release's small noise on conditioning tokens,
    ``z_cond + noise_scale * eps * t^2`` at timestep t (0 keeps them exactly clean).
    """

    latents: torch.Tensor
    frames: torch.Tensor
    noise_scale: float = 0.15

    def __post_init__(self) -> None:
        if self.latents.ndim != 5:
            raise ValueError(f"FrameConditioning.latents must be (B, C, F, H, W), got {tuple(self.latents.shape)}")
        batch, _, frames, height, width = self.latents.shape
        if self.frames.dtype != torch.bool or tuple(self.frames.shape) not in ((batch, frames),
                                                                               (batch, frames, height, width)):
            raise ValueError(f"FrameConditioning.frames must be a bool tensor (B, F) = ({batch}, {frames}) saying "
                             f"which latent frames are given, or (B, F, H, W) = ({batch}, {frames}, {height}, "
                             f"{width}) saying which tokens are, got {self.frames.dtype} {tuple(self.frames.shape)}")
        if not self.noise_scale >= 0.0:
            raise ValueError(f"FrameConditioning.noise_scale must be >= 0, got {self.noise_scale!r}")

    def check_matches(self, noise: torch.Tensor) -> None:
        """Raise unless the conditioning latents have the shape of the latents being sampled."""
        if self.latents.shape != noise.shape:
            raise ValueError(f"conditioning latents {tuple(self.latents.shape)} must have the noise's shape "
                             f"{tuple(noise.shape)}: put the given frames at their latent frame index and "
                             f"mark them in FrameConditioning.frames")

    def token_mask(self, device: torch.device) -> torch.Tensor:
        """Conditioning tokens as a bool `(B, F, H, W)` (the layout of per-token timesteps)."""
        batch, _, frames, height, width = self.latents.shape
        given = self.frames.to(device)
        if given.ndim == 2:
            given = given[:, :, None, None]  # (B, F, 1, 1)
        return given.expand(batch, frames, height, width)  # (B, F, H, W)

    def apply(self, latents: torch.Tensor, t: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reset conditioning tokens of ``latents`` to ``z_cond + noise_scale * eps * t^2`` (fresh eps)."""
        clean = self.latents.to(device=latents.device, dtype=latents.dtype)
        if self.noise_scale > 0.0 and t > 0.0:
            clean = clean + self.noise_scale * t**2 * _randn(latents.shape, generator, latents.device)
        mask = self.token_mask(latents.device).unsqueeze(1)  # (B, 1, F, H, W)
        return torch.where(mask, clean, latents)


@torch.no_grad()
def image_conditioning(vae: nn.Module, image: torch.Tensor, latent_frames: int,
                       noise_scale: float = 0.15) -> FrameConditioning:
    """Image-to-video conditioning: ``image`` `(B, 3, H, W)` or `(B, 3, 1, H, W)` in [-1, 1] encoded by the
    VAE (posterior mean, ``vae.normalize_latents``) as latent frame 0 of ``latent_frames`` frames.

    diffusers' LTX pipelines sample the posterior instead; the mean makes conditioning deterministic.
    """
    if image.ndim == 4:
        image = image.unsqueeze(2)  # (B, 3, 1, H, W)
    if image.ndim != 5 or image.shape[2] != 1:
        raise ValueError(f"image must be (B, 3, H, W) or (B, 3, 1, H, W), got {tuple(image.shape)}")
    if image.numel() and (image.min() < -1.001 or image.max() > 1.001):
        raise ValueError(f"image pixels must be in [-1, 1] (uint8: x / 127.5 - 1), got "
                         f"[{image.min().item():.3g}, {image.max().item():.3g}]")
    if not isinstance(latent_frames, int) or latent_frames < 1:
        raise ValueError(f"latent_frames must be an int >= 1 (1 + (frames - 1) / 8), got {latent_frames!r}")
    dtype = _parameter_dtype(vae, image.dtype)
    first = vae.normalize_latents(vae.encode(image.to(dtype)).mean).float()  # (B, C, 1, H', W')
    batch, channels, _, height, width = first.shape
    latents = first.new_zeros(batch, channels, latent_frames, height, width)  # (B, C, F, H', W')
    latents[:, :, :1] = first
    frames = torch.zeros(batch, latent_frames, dtype=torch.bool, device=first.device)  # (B, F)
    frames[:, 0] = True
    return FrameConditioning(latents, frames, noise_scale)


@torch.no_grad()
def last_image_conditioning(vae: nn.Module, image: torch.Tensor, latent_frames: int,
                            noise_scale: float = 0.15) -> FrameConditioning:
    """``image`` as the last latent frame (first + last frame interpolation, extension backwards): encoded
    as a one-frame clip, as diffusers' ``LTXConditionPipeline`` places a conditioning image at a later frame."""
    first = image_conditioning(vae, image, 1, noise_scale)
    batch, channels, _, height, width = first.latents.shape
    latents = first.latents.new_zeros(batch, channels, latent_frames, height, width)  # (B, C, F, H', W')
    latents[:, :, -1:] = first.latents
    frames = torch.zeros(batch, latent_frames, dtype=torch.bool, device=latents.device)  # (B, F)
    frames[:, -1] = True
    return FrameConditioning(latents, frames, noise_scale)


@torch.no_grad()
def region_conditioning(vae: nn.Module, video: torch.Tensor, given: torch.Tensor,
                        noise_scale: float = 0.0) -> FrameConditioning:
    """Inpainting / outpainting: ``video`` `(B, 3, F, H, W)` in [-1, 1] encoded by the VAE; the latent tokens
    where ``given`` is true are kept, the others generated. ``given``: `(B, F', H', W')` over latent tokens,
    or a pixel mask `(B, H, W)` / `(H, W)` (true = keep) pooled to the latent grid (a token is given when most
    of its 32 x 32 pixels are) and applied to every latent frame."""
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video must be (B, 3, F, H, W) in [-1, 1], got {tuple(video.shape)}")
    dtype = _parameter_dtype(vae, video.dtype)
    latents = vae.normalize_latents(vae.encode(video.to(dtype)).mean).float()  # (B, C, F', H', W')
    batch, _, frames, height, width = latents.shape
    given = given.to(latents.device)
    if given.ndim == 2:
        given = given.unsqueeze(0)  # (1, H, W)
    if given.ndim == 3:
        if given.shape[-2:] != video.shape[-2:]:
            raise ValueError(f"a pixel mask must be the video's size {tuple(video.shape[-2:])}, got {tuple(given.shape[-2:])}")
        pooled = nn.functional.adaptive_avg_pool2d(given.float().unsqueeze(1), (height, width))[:, 0] > 0.5  # (B|1, H', W')
        given = pooled[:, None].expand(batch, frames, height, width)
    if tuple(given.shape) != (batch, frames, height, width) or given.dtype != torch.bool:
        raise ValueError(f"given must be a bool token mask (B, F', H', W') = {(batch, frames, height, width)} or a "
                         f"pixel mask (B, H, W), got {given.dtype} {tuple(given.shape)}")
    if given.flatten(1).all(dim=1).any() or not given.flatten(1).any(dim=1).all():
        raise ValueError("the mask must give some latent tokens of each sample and leave some to generate "
                         "(white = keep, black = generate; a token is 32 x 32 pixels)")
    return FrameConditioning(latents, given.contiguous(), noise_scale)


def merge_conditionings(*items: FrameConditioning | None) -> FrameConditioning | None:
    """One conditioning from several (e.g. a first image and a last image): the union of their given tokens,
    each token's latents from the last item that gives it, the largest noise scale."""
    items = [item for item in items if item is not None]
    if not items:
        return None
    latents = items[0].latents.clone()
    given = items[0].token_mask(latents.device).clone()  # (B, F, H, W)
    for item in items[1:]:
        item.check_matches(latents)
        mask = item.token_mask(latents.device)
        latents = torch.where(mask.unsqueeze(1), item.latents.to(latents), latents)
        given |= mask
    return FrameConditioning(latents, given, max(item.noise_scale for item in items))


def _with_reference(model: VelocityModel, reference: torch.Tensor) -> VelocityModel:
    """``model`` called with ``reference=`` repeated to the batch (twice the prompts' under guidance)."""
    def call(latents, timestep, text, text_mask, fps):
        repeats = latents.shape[0] // reference.shape[0]
        return model(latents, timestep, text, text_mask, fps, reference=reference.repeat(repeats, 1, 1, 1, 1))

    return call


@SAMPLERS.register("euler")
class EulerFlowSampler:
    """First-order Euler ODE solver for rectified flow on the release's shifted schedule (LTX-Video)."""

    def __init__(self, terminal: float | None = 0.1, shift: float | None = None):
        self.terminal = terminal
        self.shift = shift

    @torch.no_grad()
    def sample(
        self,
        model: VelocityModel,
        noise: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None,
        fps: torch.Tensor | float,
        num_steps: int,
        guidance_scale: float = 3.0,
        negative_text: torch.Tensor | None = None,
        negative_text_mask: torch.Tensor | None = None,
        conditioning: FrameConditioning | None = None,
        generator: torch.Generator | None = None,
        timesteps: torch.Tensor | Sequence[float] | None = None,
        reference: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Integrate ``dz/dt = v(z, t)`` from ``noise`` (t = 1) to latents (t = 0) with Euler steps.

        Rectified flow (Liu et al. 2022; Esser et al. 2024, SD3): ``z_t = (1 - t) z0 + t eps`` and the model
        predicts ``v = eps - z0``, so each step is ``z <- z + (t_next - t) v`` (``t_next < t``); the path is
        straight for a perfect model, which is why few steps suffice. Classifier-free guidance (Ho &
        Salimans 2022) when ``guidance_scale > 1``: ``v = v_u + s (v_c - v_u)``, the two passes batched,
        the unconditional one on ``negative_text`` (the caller's embedding of the empty prompt "", as
        the release does). ``conditioning`` tokens get per-token timestep 0 and are reset after every
        step to ``z_cond + noise_scale * eps * t_next^2`` (diffusers ``LTXConditionPipeline``), so only
        the other tokens are integrated and they end exactly clean at t = 0 (diffusers keeps the last
        step's ``0.15 t^2`` noise; its ``LTXImageToVideoPipeline`` uses no noise: ``noise_scale=0``).

        Args: ``noise (B, C, F, H, W)``; ``text (B, L, D)`` with ``text_mask (B, L)``; ``fps`` a number or
        ``(B,)``; ``timesteps`` overrides the schedule: ``(num_steps + 1,)`` decreasing values in [0, 1]
        (default ``flow_timesteps(num_steps, F*H*W, terminal, shift)``); ``generator`` draws the
        conditioning noise; ``reference (B, C, F, H/s, W/s)``: clean latents of a reference video that the
        model sees appended to the sequence at t = 0 in every step (IC-LoRA; the model must take
        ``reference=``, as ``VideoTransformer`` does). Returns the latents with the noise's shape and dtype.
        """
        guided = self._check_inputs(noise, text, text_mask, num_steps, guidance_scale, negative_text)
        if conditioning is not None:
            conditioning.check_matches(noise)
        schedule = self._schedule(num_steps, noise, timesteps)
        model_dtype = _parameter_dtype(model, noise.dtype)
        if reference is not None:
            model = _with_reference(model, reference.to(device=noise.device, dtype=model_dtype))
        text, text_mask, fps = self._model_inputs(text, text_mask, fps, negative_text, negative_text_mask, guided)
        inputs = (text.to(model_dtype), text_mask, fps)

        z = noise.to(torch.promote_types(noise.dtype, torch.float32))  # integrate in at least float32
        if conditioning is not None:
            z = conditioning.apply(z, schedule[0], generator)
        for t, t_next in zip(schedule[:-1], schedule[1:]):
            timestep = self._token_timesteps(z, t, conditioning)
            velocity = self._velocity(model, z.to(model_dtype), timestep, inputs, guidance_scale if guided else None)
            z = z + (t_next - t) * velocity.to(z.dtype)
            if conditioning is not None:
                z = conditioning.apply(z, t_next, generator)
        return z.to(noise.dtype)

    def _schedule(self, num_steps: int, noise: torch.Tensor,
                  timesteps: torch.Tensor | Sequence[float] | None) -> list[float]:
        """The ``num_steps + 1`` timesteps as floats: the caller's (validated) or the release schedule."""
        if timesteps is None:
            num_tokens = noise.shape[2] * noise.shape[3] * noise.shape[4]
            return flow_timesteps(num_steps, num_tokens, self.terminal, self.shift).tolist()
        values = torch.as_tensor(timesteps, dtype=torch.float64).flatten().tolist()
        if len(values) != num_steps + 1:
            raise ValueError(f"timesteps must hold num_steps + 1 = {num_steps + 1} values (the last is where "
                             f"integration ends, normally 0), got {len(values)}")
        if min(values) < 0.0 or max(values) > 1.0 or any(b >= a for a, b in zip(values, values[1:])):
            raise ValueError(f"timesteps must decrease strictly within [0, 1] (1 = noise, 0 = clean), got {values}")
        return values

    @staticmethod
    def _check_inputs(noise: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None, num_steps: int,
                      guidance_scale: float, negative_text: torch.Tensor | None) -> bool:
        """Validate shapes and settings; return whether classifier-free guidance is on."""
        if noise.ndim != 5 or not noise.is_floating_point():
            raise ValueError(f"noise must be a float tensor (B, C, F, H, W), got {noise.dtype} {tuple(noise.shape)}")
        if text.ndim != 3 or text.shape[0] != noise.shape[0]:
            raise ValueError(f"text must be (B={noise.shape[0]}, L, D) embeddings, one per sample, got "
                             f"{tuple(text.shape)}")
        if text_mask is not None and tuple(text_mask.shape) != tuple(text.shape[:2]):
            raise ValueError(f"text_mask must be (B, L) = {tuple(text.shape[:2])}, got {tuple(text_mask.shape)}")
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")
        if not guidance_scale >= 1.0:
            raise ValueError(f"guidance_scale must be >= 1 (1 turns guidance off), got {guidance_scale!r}")
        guided = guidance_scale > 1.0
        if guided and negative_text is None:
            raise ValueError(f"guidance_scale={guidance_scale} > 1 needs negative_text: encode the empty prompt '' "
                             f"(the release's negative prompt) with the same text encoder and pass it with "
                             f"negative_text_mask, or pass guidance_scale=1 to sample without guidance")
        return guided

    @staticmethod
    def _model_inputs(text: torch.Tensor, text_mask: torch.Tensor | None, fps: torch.Tensor | float,
                      negative_text: torch.Tensor | None, negative_text_mask: torch.Tensor | None,
                      guided: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | float]:
        """Text, mask and fps for the model: batched ``[unconditional, conditional]`` under guidance."""
        if not guided:
            return text, text_mask, fps
        batch, length, dim = text.shape
        if negative_text.ndim == 2:
            negative_text = negative_text.unsqueeze(0)  # (1, L, D)
        if negative_text.ndim != 3 or negative_text.shape[1:] != (length, dim) or negative_text.shape[0] not in (1, batch):
            raise ValueError(f"negative_text must be (L, D), (1, L, D) or (B, L, D) with L={length}, D={dim}, "
                             f"B={batch} (pad it to the prompt's length), got {tuple(negative_text.shape)}")
        negative_text = negative_text.to(text).expand(batch, length, dim)  # (B, L, D)
        if text_mask is not None or negative_text_mask is not None:
            ones = torch.ones(batch, length, device=text.device)
            text_mask = ones if text_mask is None else text_mask
            negative_text_mask = ones if negative_text_mask is None else negative_text_mask
            if negative_text_mask.ndim == 1:
                negative_text_mask = negative_text_mask.unsqueeze(0)  # (1, L)
            if negative_text_mask.shape[-1] != length or negative_text_mask.shape[0] not in (1, batch):
                raise ValueError(f"negative_text_mask must be (L,), (1, L) or (B, L) with L={length}, "
                                 f"got {tuple(negative_text_mask.shape)}")
            negative_text_mask = negative_text_mask.to(text_mask).expand(batch, length)  # (B, L)
            text_mask = torch.cat([negative_text_mask, text_mask])  # (2B, L)
        if isinstance(fps, torch.Tensor) and fps.ndim > 0:
            fps = torch.cat([fps.reshape(-1).expand(batch)] * 2)  # (2B,)
        return torch.cat([negative_text, text]), text_mask, fps  # (2B, L, D)

    @staticmethod
    def _token_timesteps(z: torch.Tensor, t: float, conditioning: FrameConditioning | None) -> torch.Tensor:
        """``(B,)`` timesteps, or per token ``(B, F, H, W)`` with 0 on conditioning tokens."""
        batch, _, frames, height, width = z.shape
        if conditioning is None:
            return torch.full((batch,), t, dtype=torch.float32, device=z.device)  # (B,)
        timestep = torch.full((batch, frames, height, width), t, dtype=torch.float32, device=z.device)  # (B, F, H, W)
        return timestep.masked_fill(conditioning.token_mask(z.device), 0.0)

    @staticmethod
    def _velocity(model: VelocityModel, z: torch.Tensor, timestep: torch.Tensor,
                  inputs: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | float],
                  guidance_scale: float | None) -> torch.Tensor:
        """The model's velocity; with a guidance scale, one batched pass and ``v_u + s (v_c - v_u)``."""
        text, text_mask, fps = inputs
        if guidance_scale is None:
            return model(z, timestep, text, text_mask, fps).float()
        both = model(torch.cat([z, z]), torch.cat([timestep, timestep]), text, text_mask, fps).float()  # (2B, ...)
        unconditional, conditional = both.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)
