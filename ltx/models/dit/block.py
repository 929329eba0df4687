"""The LTX transformer block: PixArt-alpha with RMSNorm, QK-norm across heads, RoPE self-attention,
masked cross-attention to text and a GELU(tanh) feed-forward, modulated by adaLN-single."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ltx.models.common.norm import RMSNorm, rms_norm
from ltx.positional.rope import RotaryPhases, apply_rotary_phases


class Attention(nn.Module):
    """Multi-head attention with RMSNorm on the full Q and K (across heads), optional RoPE on Q/K and an
    additive key bias (text mask); ``scaled_dot_product_attention`` does the rest."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, bias: bool = True,
                 out_bias: bool = True, qk_norm_eps: float = 1e-5):
        super().__init__()
        inner = heads * head_dim
        context_dim = context_dim or dim
        self.heads = heads
        self.norm_q = RMSNorm(inner, eps=qk_norm_eps, elementwise_affine=True)
        self.norm_k = RMSNorm(inner, eps=qk_norm_eps, elementwise_affine=True)
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=out_bias), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                rope: RotaryPhases | None = None, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        query = self.norm_q(self.to_q(x))  # (B, N, H*D)
        key = self.norm_k(self.to_k(context))  # (B, M, H*D)
        value = self.to_v(context)
        if rope is not None:  # phases (B, N, H*D/2), see ltx.positional.rope.rotary_phases
            query = apply_rotary_phases(query, rope)
            key = apply_rotary_phases(key, rope)
        query, key, value = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (query, key, value))  # (B, H, N, D)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=key_bias)  # (B, H, N, D)
        out = out.transpose(1, 2).flatten(2)  # (B, N, H*D)
        return self.to_out[1](self.to_out[0](out))


class GELUProjection(nn.Module):
    """Linear then GELU (tanh approximation)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """``dim -> 4 dim -> dim`` with GELU(tanh); names as released (``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GELUProjection(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TransformerBlock(nn.Module):
    """norm -> modulate -> RoPE self-attention -> gate -> residual; cross-attention to text -> residual;
    norm -> modulate -> feed-forward -> gate -> residual. The block adds its learned `(6, D)` table to
    the (per-token) adaLN-single embedding to get shift / scale / gate for both halves."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int, eps: float = 1e-6,
                 bias: bool = True, out_bias: bool = True):
        super().__init__()
        self.eps = eps
        self.attn1 = Attention(dim, heads, head_dim, None, bias, out_bias)
        self.attn2 = Attention(dim, heads, head_dim, context_dim, bias, out_bias)
        self.ff = FeedForward(dim)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, text: torch.Tensor, modulation: torch.Tensor,
                rope: RotaryPhases, text_bias: torch.Tensor | None) -> torch.Tensor:
        batch, tokens = modulation.shape[:2]
        ada = self.scale_shift_table[None, None] + modulation.reshape(batch, tokens, 6, -1)  # (B, N or 1, 6, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = ada.unbind(dim=2)
        h = torch.addcmul(shift_msa, rms_norm(x, eps=self.eps), 1 + scale_msa)  # norm * (1 + scale) + shift
        x = torch.addcmul(x, self.attn1(h, rope=rope), gate_msa)  # x + attention * gate
        x = x + self.attn2(x, context=text, key_bias=text_bias)
        h = torch.addcmul(shift_mlp, rms_norm(x, eps=self.eps), 1 + scale_mlp)
        return torch.addcmul(x, self.ff(h), gate_mlp)
