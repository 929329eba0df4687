"""Video-VAE layers: causal 3D convolution, PixelNorm, ResBlock with AdaLN and noise injection,
depth-to-space upsampling, and the 4x4 patchify (LTX-Video paper, Sec. 3.1; release v0.9.1)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def conv3d(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """``conv(x)``, on CPU in float32 through oneDNN (mkldnn) whatever the shape, forward and backward.

    PyTorch's CPU backend choice is tuned for 2D: a batch-1 3D input with fewer than ~20k
    ``B*C*F*H`` elements and a 3x3x3 kernel goes to ``slow_conv3d`` (vol2col + GEMM), which is 2-8x
    slower than oneDNN on the small, deep feature maps of a Video-VAE; its backward is slower still
    (see :class:`_OneDNNConv3d`). The result differs from the default kernel only by float32
    summation order (~1e-7 relative forward, ~1e-6 for the gradients). Elsewhere (GPU, other dtypes,
    autocast, no oneDNN build, under torch.compile, whose fake tensors cannot run the oneDNN op and
    which picks its own kernels) this is plain ``conv(x)``.
    """
    if (x.device.type == "cpu" and x.dtype == torch.float32 and conv.weight.dtype == torch.float32
            and not torch.compiler.is_compiling()
            and conv.padding_mode == "zeros" and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu")):
        return _OneDNNConv3d.apply(x.contiguous(), conv.weight, conv.bias, tuple(conv.padding), tuple(conv.stride),
                                   tuple(conv.dilation), conv.groups)
    return conv(x)


def _mkldnn_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding, stride=(1, 1, 1),
                   dilation=(1, 1, 1), groups: int = 1) -> torch.Tensor:
    return torch.ops.aten.mkldnn_convolution(x, weight, bias, padding, stride, dilation, groups)


class _OneDNNConv3d(torch.autograd.Function):
    """oneDNN 3D convolution whose backward also runs as oneDNN forward convolutions.

    Autograd would send the gradients through ``convolution_backward``, which picks its kernel with the
    same 2D-tuned rule as the forward: for the small batch-1 shapes that is ``slow_conv3d``'s backward,
    10-20x the oneDNN forward (230 ms against 12 ms at 64 ch x 9 x 32 x 32). For stride 1 and no
    groups, both gradients are ordinary convolutions, which oneDNN runs at forward speed:

    - input: the output gradient convolved with the weights flipped in space-time and with in / out
      channels swapped, padded by ``k - 1 - p``;
    - weight: the correlation of the input with the output gradient, as a convolution with the batch
      axis as channels: input `(C_in, B, F, H, W)`, "weights" `(C_out, B, F', H', W')`, padding ``p``.

    Strided, dilated or grouped convolutions, and shapes where ``convolution_backward`` would use
    oneDNN anyway, keep the stock backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, ...],
                stride: tuple[int, ...], dilation: tuple[int, ...], groups: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.settings = (padding, stride, dilation, groups, bias is not None)
        return _mkldnn_conv3d(x, weight, bias, padding, stride, dilation, groups)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        padding, stride, dilation, groups, has_bias = ctx.settings
        grad = grad.contiguous()
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        if not _convolutions_as_gradients(x, weight, padding, stride, dilation, groups):
            bias_sizes = [weight.shape[0]] if has_bias else None
            grad_input, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad, x, weight, bias_sizes, stride, padding, dilation, False, [0, 0, 0], groups,
                [need_input, need_weight, need_bias and has_bias])
            return grad_input, grad_weight, grad_bias, None, None, None, None
        grad_input = grad_weight = grad_bias = None
        if need_input:
            flipped = weight.flip(2, 3, 4).transpose(0, 1).contiguous()  # (C_in, C_out, kF, kH, kW)
            full = [k - 1 - p for k, p in zip(weight.shape[2:], padding, strict=True)]
            grad_input = _mkldnn_conv3d(grad, flipped, None, full)  # (B, C_in, F, H, W)
        if need_weight:
            correlation = _mkldnn_conv3d(x.transpose(0, 1).contiguous(), grad.transpose(0, 1).contiguous(), None,
                                         padding)  # (C_in, C_out, kF, kH, kW)
            grad_weight = correlation.transpose(0, 1).contiguous()
        if need_bias and has_bias:
            grad_bias = grad.sum(dim=(0, 2, 3, 4))
        return grad_input, grad_weight, grad_bias, None, None, None, None


def _convolutions_as_gradients(x: torch.Tensor, weight: torch.Tensor, padding, stride, dilation, groups) -> bool:
    """Whether :class:`_OneDNNConv3d` computes the gradients as convolutions: stride 1, no dilation or
    groups, a kernel larger than 1, padding at most ``k - 1``, and a shape ``convolution_backward``
    would not send to oneDNN itself."""
    if groups != 1 or any(s != 1 for s in stride) or any(d != 1 for d in dilation):
        return False
    kernel = weight.shape[2:]
    if all(k == 1 for k in kernel) or any(p > k - 1 for k, p in zip(kernel, padding, strict=True)):
        return False
    select = getattr(torch._C, "_select_conv_backend", None)  # the backend convolution_backward would use
    if select is None:
        return True
    backend = select(x, weight, None, list(stride), list(padding), list(dilation), False, [0, 0, 0], groups, None)
    return backend != torch._C._ConvBackend.Mkldnn


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean_c(x^2) + eps)`` over the channel axis of `(B, C, F, H, W)`."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


class CausalConv3d(nn.Module):
    """3D convolution padded in time by repeating edge frames, zero-padded in space.

    Causal (encoder): the first frame is repeated ``k - 1`` times in front, so output frame ``i``
    sees input frames ``<= i`` only. Non-causal (decoder): first and last frames repeated ``(k-1)/2``
    times each side.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int | tuple[int, int, int] = 1,
                 causal: bool = True):
        super().__init__()
        self.kernel_size, self.causal = kernel_size, causal
        stride = stride if isinstance(stride, tuple) else (stride,) * 3
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(0, kernel_size // 2, kernel_size // 2))

    def pad_time(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, F, H, W)` -> `(B, C, F + k - 1, H, W)` with edge frames repeated."""
        if self.kernel_size == 1:
            return x
        if self.causal:
            front = x[:, :, :1].expand(-1, -1, self.kernel_size - 1, -1, -1)
            return torch.cat([front, x], dim=2)
        side = (self.kernel_size - 1) // 2
        front = x[:, :, :1].expand(-1, -1, side, -1, -1)
        back = x[:, :, -1:].expand(-1, -1, side, -1, -1)
        return torch.cat([front, x, back], dim=2)

    def time_padding(self) -> tuple[int, int]:
        """Edge frames repeated in front and behind by ``pad_time``."""
        if self.causal:
            return self.kernel_size - 1, 0
        return (self.kernel_size - 1) // 2, (self.kernel_size - 1) // 2

    def forward_in_time_chunks(self, x: torch.Tensor, chunk_frames: int = 4,
                               prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
                               finish: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``finish(self(prepare(x)))`` for per-frame ``prepare`` / ``finish`` (patchify, unpatchify).

        Without autograd it is computed ``chunk_frames`` output frames (default 4) at a time into one output
        tensor, so the full-size intermediates (the 48-channel patchified video at the encoder's
        input, the decoder's last conv output) are never whole. With autograd: one pass.
        """
        prepare = prepare or (lambda frames: frames)
        finish = finish or (lambda frames: frames)
        if torch.is_grad_enabled() or self.conv.stride[0] != 1:
            return finish(self(prepare(x)))
        front, back = self.time_padding()
        frames, out = x.shape[2], None
        for start in range(0, frames, chunk_frames):
            stop = min(frames, start + chunk_frames)
            index = torch.arange(start - front, stop + back, device=x.device).clamp_(0, frames - 1)
            piece = finish(self.convolve(prepare(x.index_select(2, index))))  # edge frames repeated
            if out is None:
                out = piece.new_empty(*piece.shape[:2], frames, *piece.shape[3:])
            out[:, :, start:stop] = piece
        return out

    def convolve(self, padded: torch.Tensor) -> torch.Tensor:
        """The convolution alone, on an input ``pad_time`` already padded: `(B, C, F + k - 1, H, W)`."""
        return conv3d(padded, self.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolve(self.pad_time(x))


class ResBlock3d(nn.Module):
    """PixelNorm -> [AdaLN] -> SiLU -> conv -> [noise] -> PixelNorm -> [AdaLN] -> SiLU -> dropout -> conv
    -> [noise], plus a (LayerNorm + 1x1x1 conv) shortcut when the channel count changes.

    AdaLN (timestep conditioning): the block adds its learned `(4, C)` table to the embedding from
    its stage and applies ``h * (1 + scale) + shift`` twice. Noise injection (StyleGAN-like): one
    standard-normal `(H, W)` map times a learned per-channel scale initialised to zero.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0, eps: float = 1e-6,
                 causal: bool = True, inject_noise: bool = False, timestep_conditioning: bool = False):
        super().__init__()
        out_channels = out_channels or in_channels
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, causal=causal)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, causal=causal)
        self.norm3 = self.conv_shortcut = None
        if in_channels != out_channels:
            self.norm3 = nn.LayerNorm(in_channels, eps=eps, elementwise_affine=True)
            self.conv_shortcut = CausalConv3d(in_channels, out_channels, 1, causal=causal)
        self.per_channel_scale1 = self.per_channel_scale2 = None
        if inject_noise:
            self.per_channel_scale1 = nn.Parameter(torch.zeros(in_channels, 1, 1))
            self.per_channel_scale2 = nn.Parameter(torch.zeros(in_channels, 1, 1))
        self.scale_shift_table = None
        if timestep_conditioning:
            self.scale_shift_table = nn.Parameter(torch.randn(4, in_channels) / in_channels**0.5)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        # Without autograd (inference) the intermediates are updated in place and each is dropped as
        # soon as its successor exists: at most x, one padded input and one conv output are alive.
        inplace = not torch.is_grad_enabled()
        scale2 = shift2 = None
        h = pixel_norm(x)
        if self.scale_shift_table is not None:
            if embedding is None:
                raise ValueError("this block is timestep-conditioned: pass the timestep embedding")
            modulation = embedding.unflatten(1, (4, -1)) + self.scale_shift_table[None, ..., None, None, None]
            shift1, scale1, shift2, scale2 = modulation.unbind(dim=1)  # each (B, C, 1, 1, 1)
            h = _modulate(h, scale1, shift1, inplace)
        h = self.conv1.pad_time(_silu(h, inplace))
        h = self.conv1.convolve(h)
        h = self._add_noise(h, self.per_channel_scale1, generator, inplace)
        h = pixel_norm(h)
        if scale2 is not None:
            h = _modulate(h, scale2, shift2, inplace)
        h = self.conv2.pad_time(self.dropout(_silu(h, inplace)))
        h = self.conv2.convolve(h)
        h = self._add_noise(h, self.per_channel_scale2, generator, inplace)
        shortcut = x
        if self.norm3 is not None:
            shortcut = self.norm3(shortcut.movedim(1, -1)).movedim(-1, 1)
            shortcut = self.conv_shortcut(shortcut)
        return _add(h, shortcut, inplace)

    @staticmethod
    def _add_noise(h: torch.Tensor, scale: torch.Tensor | None, generator: torch.Generator | None,
                   inplace: bool) -> torch.Tensor:
        if scale is None:
            return h
        # generator=None is left out: torch.compile cannot trace randn's generator overload with symbolic sizes
        seeded = {} if generator is None else {"generator": generator}
        noise = torch.randn(h.shape[-2:], device=h.device, dtype=h.dtype, **seeded)  # (H, W)
        noise = (noise[None] * scale)[None, :, None]  # (1, C, 1, H, W)
        return _add(h, noise, inplace)


def _keeps_dtype(h: torch.Tensor, *others: torch.Tensor) -> bool:
    """Whether ``h op other`` has ``h``'s dtype, so doing it in place changes nothing (under autocast a
    bf16 conv output plus an fp32 residual is fp32, and must stay so)."""
    return all(torch.result_type(h, other) == h.dtype for other in others)


def _add(h: torch.Tensor, other: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``h + other``, overwriting ``h`` when ``inplace`` (inference only) and the dtype allows."""
    return h.add_(other) if inplace and _keeps_dtype(h, other) else h + other


def _modulate(h: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, inplace: bool) -> torch.Tensor:
    """AdaLN ``h * (1 + scale) + shift``; ``inplace`` overwrites ``h`` (inference only) when the dtype allows."""
    if inplace and _keeps_dtype(h, scale, shift):
        return h.mul_(1 + scale).add_(shift)
    return h * (1 + scale) + shift


def _silu(h: torch.Tensor, inplace: bool) -> torch.Tensor:
    return nn.functional.silu(h, inplace=inplace)


def depth_to_space(x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    """`(B, C*st*sh*sw, F, H, W)` -> `(B, C, F*st, H*sh, W*sw)`."""
    batch, _, frames, height, width = x.shape
    st, sh, sw = stride
    x = x.reshape(batch, -1, st, sh, sw, frames, height, width)  # (B, C, st, sh, sw, F, H, W)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, C, F, st, H, sh, W, sw)
    return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)  # (B, C, F*st, H*sh, W*sw)


class DepthToSpaceUpsampler(nn.Module):
    """Conv to ``8 C / factor`` channels, 3D depth-to-space (2, 2, 2), drop the first frame.

    Dropping the first output frame turns ``f`` frames into ``2f - 1``: 1 + k latent frames become
    1 + 2k, and three of these give 1 + 8k. With ``residual``, the input rearranged the same way and
    repeated over channels is added (the release's residual upsampler).
    """

    def __init__(self, in_channels: int, stride: tuple[int, int, int] = (2, 2, 2), causal: bool = True,
                 residual: bool = False, upscale_factor: int = 1):
        super().__init__()
        self.stride, self.residual, self.upscale_factor = stride, residual, upscale_factor
        volume = stride[0] * stride[1] * stride[2]
        self.conv = CausalConv3d(in_channels, in_channels * volume // upscale_factor, 3, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drop = self.stride[0] - 1
        out = depth_to_space(self.conv(x), self.stride)  # (B, C', 2F, 2H, 2W), a fresh tensor
        if self.residual:
            # The release repeats the rearranged input over channels; adding it broadcast over
            # `repeats` groups of channels is the same sum without materialising the repeat.
            repeats = self.stride[0] * self.stride[1] * self.stride[2] // self.upscale_factor
            shortcut = depth_to_space(x, self.stride).unsqueeze(1)  # (B, 1, C'/repeats, 2F, 2H, 2W)
            grouped = out.unflatten(1, (repeats, -1))  # (B, repeats, C'/repeats, 2F, 2H, 2W)
            out = _add(grouped, shortcut, not torch.is_grad_enabled()).flatten(1, 2)
        return out[:, :, drop:]  # (B, C', 2F-1, 2H, 2W)


def space_to_depth(x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of ``depth_to_space``: `(B, C, F*st, H*sh, W*sw)` -> `(B, C*st*sh*sw, F, H, W)`, the
    channel axis ordered (C, st, sh, sw)."""
    st, sh, sw = stride
    x = x.unflatten(4, (-1, sw)).unflatten(3, (-1, sh)).unflatten(2, (-1, st))  # (B, C, F, st, H, sh, W, sw)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).flatten(1, 4)  # (B, C*st*sh*sw, F, H, W)


class SpaceToDepthDownsampler(nn.Module):
    """The v0.9.5 encoder downsampler: ``C -> C'`` channels, each axis in ``stride`` halved.

    The first ``st - 1`` frames are repeated in front (so ``1 + 2k`` frames become ``1 + k``); a conv to
    ``C' / (st*sh*sw)`` channels is folded space-to-depth into ``C'`` channels, and added to the input
    folded the same way, averaged over groups of ``C*st*sh*sw / C'`` channels (a parameter-free shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int], causal: bool = True):
        super().__init__()
        self.stride = stride
        volume = stride[0] * stride[1] * stride[2]
        self.group_size = in_channels * volume // out_channels
        self.conv = CausalConv3d(in_channels, out_channels // volume, 3, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :, : self.stride[0] - 1], x], dim=2)  # (B, C, F + st - 1, H, W)
        shortcut = space_to_depth(x, self.stride)  # (B, C*vol, F', H', W')
        shortcut = shortcut.unflatten(1, (-1, self.group_size)).mean(dim=2)  # (B, C', F', H', W')
        return space_to_depth(self.conv(x), self.stride) + shortcut  # (B, C', F', H', W')


def patchify(video: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Space-to-depth `(B, C, F, H, W)` -> `(B, C*p*p, F, H/p, W/p)` in the release's channel order
    (channel, width offset, height offset)."""
    batch, channels, frames, height, width = video.shape
    p = patch_size
    x = video.reshape(batch, channels, frames, height // p, p, width // p, p)  # (B, C, F, H', ph, W', pw)
    x = x.permute(0, 1, 6, 4, 2, 3, 5)  # (B, C, pw, ph, F, H', W')
    return x.flatten(1, 3)  # (B, C*p*p, F, H', W')


def unpatchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Inverse of ``patchify``: `(B, C*p*p, F, H', W')` -> `(B, C, F, H'*p, W'*p)`."""
    batch, _, frames, height, width = x.shape
    p = patch_size
    x = x.reshape(batch, -1, p, p, frames, height, width)  # (B, C, pw, ph, F, H', W')
    x = x.permute(0, 1, 4, 5, 3, 6, 2)  # (B, C, F, H', ph, W', pw)
    return x.reshape(batch, x.shape[1], frames, height * p, width * p)  # (B, C, F, H, W)
