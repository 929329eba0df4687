"""The LTX video transformer (paper Sec. 3.3): latents patchified at size 1, RoPE positions from the
latent grid and fps, adaLN-single timestep modulation (per sample or per token), text cross-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ltx.models.common.embeddings import TimestepEmbedder
from ltx.models.dit.block import TransformerBlock
from ltx.models.dit.config import DiTConfig
from ltx.positional.coordinates import LatentGrid, token_coordinates
from ltx.positional.rope import rope_frequencies, rotary_embedding, rotary_phases

TEXT_MASK_BIAS = -10_000.0  # additive bias on masked-out text tokens (as released; finite, so no NaNs)


class AdaLayerNormSingle(nn.Module):
    """adaLN-single: t -> sinusoid(256) -> MLP -> SiLU -> Linear to the 6 modulation vectors of all
    blocks. Returns the modulation `(N, 6D)` and the embedding `(N, D)` (for the output layer)."""

    def __init__(self, dim: int):
        super().__init__()
        self.emb = TimestepEmbedder(dim)
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, 6 * dim)

    def forward(self, timestep: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.emb(timestep, dtype)  # (N, D)
        return self.linear(self.silu(embedding)), embedding


class CaptionProjection(nn.Module):
    """Text features -> hidden size: Linear, GELU(tanh), Linear."""

    def __init__(self, in_features: int, hidden: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(text), approximate="tanh"))


def patchify_latents(latents: torch.Tensor) -> torch.Tensor:
    """`(B, C, F, H, W)` -> tokens `(B, F*H*W, C)` in (f, h, w) order."""
    return latents.flatten(2).transpose(1, 2)


def unpatchify_latents(tokens: torch.Tensor, grid: LatentGrid) -> torch.Tensor:
    """Tokens `(B, N, C)` -> `(B, C, F, H, W)`."""
    return tokens.transpose(1, 2).unflatten(2, (grid.frames, grid.height, grid.width))


def reference_tokens(reference: torch.Tensor, coordinates: torch.Tensor, grid: LatentGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference-video conditioning (IC-LoRA): the reference's tokens `(B, N_r, C)` and their coordinates
    `(B, N_r, 3)`, aligned to the target's grid. The reference `(B, C, F, H/s, W/s)` has the target's latent
    frames and its size divided by an integer ``s`` (1: the same size); its token (f, h, w) takes the
    coordinates of the target's token (f, h*s, w*s) (``coordinates`` `(B, N, 3)` of the target, (f, h, w) order),
    so a downscaled reference lies over the same pixels."""
    batch, _, frames, height, width = reference.shape
    scale = grid.height // height if height else 0
    if (frames != grid.frames or not height or grid.height % height or grid.width % width
            or grid.width // width != scale):
        raise ValueError(f"the reference latents {tuple(reference.shape)} must have the target's {grid.frames} latent "
                         f"frames and its size {grid.height} x {grid.width} divided by one integer factor")
    aligned = coordinates.unflatten(1, (grid.frames, grid.height, grid.width))[:, :, ::scale, ::scale]  # (B, F, H/s, W/s, 3)
    return patchify_latents(reference), aligned.flatten(1, 3)  # (B, N_r, C), (B, N_r, 3)


def trim_text_padding(text: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the trailing text positions that are padding in every row: text `(B, L, D)`, mask `(B, L)` ->
    `(B, L', D)`, `(B, L')` with L' the longest caption. Masked keys get ``TEXT_MASK_BIAS`` (their softmax
    weight underflows to 0), so cross-attention is unchanged while its cost falls from L to L' keys (a
    128-token T5 pad around a 20-token caption). A row with no valid position keeps the full length: its
    attention is uniform over all L keys."""
    valid = text_mask.bool()  # (B, L)
    if not valid.any(dim=1).all():
        return text, text_mask
    length = int(valid.any(dim=0).nonzero().max()) + 1
    return text[:, :length], text_mask[:, :length]


class VideoTransformer(nn.Module):
    """Predicts the rectified-flow velocity of video latents given noise level(s), text and fps.

    ``forward(latents, timestep, text, text_mask, fps)``: latents `(B, C, F', H', W')`; timestep in
    [0, 1] as `(B,)` or per token `(B, F', H', W')` (conditioning tokens carry their own); text
    `(B, L, caption_channels)` with mask `(B, L)`; fps `(B,)` or a number. Returns `(B, C, F', H', W')`.
    ``forward_tokens`` is the same on a token subset with explicit coordinates (token dropping).
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.proj_in = nn.Linear(config.in_channels, dim)
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.time_embed = AdaLayerNormSingle(dim)
        self.caption_projection = CaptionProjection(config.caption_channels, dim)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_attention_heads, config.attention_head_dim, config.cross_attention_dim,
                             config.norm_eps, config.attention_bias, config.attention_out_bias)
            for _ in range(config.num_layers)
        )
        self.norm_out = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.proj_out = nn.Linear(dim, config.out_channels)
        self.register_buffer("rope_frequencies", rope_frequencies(config.rope_spacing, dim, config.rope_theta),
                             persistent=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier-uniform Linears (zero bias); zero the attention out-projections, the FFN output and the
        final projection so every block starts as the identity (DiT / PixArt practice)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for block in self.transformer_blocks:
            for layer in (block.attn1.to_out[0], block.attn2.to_out[0], block.ff.net[2]):
                nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.proj_out.weight)

    def coordinates(self, grid: LatentGrid, fps: torch.Tensor | float, batch_size: int,
                    device: torch.device | None = None) -> torch.Tensor:
        """`(B, N, 3)` token coordinates under the configured position scheme."""
        return token_coordinates(self.config.positions, grid, fps, batch_size, device,
                                 max_extent=self.config.max_extent)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor | float, text: torch.Tensor,
                text_mask: torch.Tensor | None = None, fps: torch.Tensor | float = 24.0,
                reference: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity `(B, C, F, H, W)`. ``reference`` (IC-LoRA): clean latents of a reference video appended to
        the token sequence at t = 0 (see ``reference_tokens``); only the target's velocity is returned."""
        if latents.ndim != 5 or latents.shape[1] != self.config.in_channels:
            raise ValueError(f"latents must be (B, {self.config.in_channels}, F', H', W'), got {tuple(latents.shape)}")
        batch, _, frames, height, width = latents.shape
        grid = LatentGrid(frames, height, width)
        timestep = torch.as_tensor(timestep, dtype=torch.float32, device=latents.device)
        if timestep.ndim == 4:
            if timestep.shape != (batch, frames, height, width):
                raise ValueError(f"per-token timesteps must be (B, F', H', W') = {(batch, frames, height, width)}, "
                                 f"got {tuple(timestep.shape)}")
            timestep = timestep.flatten(1)  # (B, N)
        else:
            timestep = timestep.reshape(-1).expand(batch)  # (B,)
        coordinates = self.coordinates(grid, fps, batch, latents.device)
        tokens = patchify_latents(latents)  # (B, N, C)
        if reference is not None:
            extra, extra_coordinates = reference_tokens(reference.to(tokens.dtype), coordinates, grid)
            timestep = timestep[:, None].expand(batch, grid.num_tokens) if timestep.ndim == 1 else timestep  # (B, N)
            timestep = torch.cat([timestep, timestep.new_zeros(batch, extra.shape[1])], dim=1)  # (B, N + N_r)
            tokens, coordinates = torch.cat([tokens, extra], dim=1), torch.cat([coordinates, extra_coordinates], dim=1)
        tokens = self.forward_tokens(tokens, coordinates, timestep, text, text_mask)
        return unpatchify_latents(tokens[:, : grid.num_tokens], grid)

    def forward_tokens(self, tokens: torch.Tensor, coordinates: torch.Tensor, timestep: torch.Tensor,
                       text: torch.Tensor, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens `(B, N, C)` at `(B, N, 3)` coordinates, timestep `(B,)` or `(B, N)` -> velocity `(B, N, C)`."""
        batch, count, _ = tokens.shape
        self._check_text(text, text_mask, batch)
        if text_mask is not None:
            text, text_mask = trim_text_padding(text, text_mask)  # (B, L' <= L, D), (B, L')
        rope = rotary_phases(*rotary_embedding(coordinates, self.rope_frequencies, self.config.hidden_size))  # (B, N, D/2)
        text_bias = None
        if text_mask is not None:
            text_bias = (1 - text_mask.to(tokens.dtype)) * TEXT_MASK_BIAS  # (B, L)
            text_bias = text_bias[:, None, None, :]  # (B, 1, 1, L)
        x = self.proj_in(tokens)  # (B, N, D)
        scaled = timestep.to(tokens.device).float() * self.config.timestep_scale
        modulation, embedding = self.time_embed(scaled.flatten(), x.dtype)  # (B or B*N, 6D), (B or B*N, D)
        modulation = modulation.view(batch, -1, modulation.shape[-1])  # (B, 1 or N, 6D)
        embedding = embedding.view(batch, -1, embedding.shape[-1])  # (B, 1 or N, D)
        context = self.caption_projection(text)  # (B, L, D)
        for block in self.transformer_blocks:
            x = block(x, context, modulation, rope, text_bias)
        shift, scale = (self.scale_shift_table[None, None] + embedding[:, :, None]).unbind(dim=2)  # (B, 1|N, D)
        x = self.norm_out(x) * (1 + scale) + shift
        return self.proj_out(x)  # (B, N, C)

    def _check_text(self, text: torch.Tensor, text_mask: torch.Tensor | None, batch: int) -> None:
        expected = self.config.caption_channels
        if text.ndim != 3 or text.shape[0] != batch or text.shape[2] != expected:
            raise ValueError(f"text must be (B={batch}, L, {expected}) features of the configured text encoder, "
                             f"got {tuple(text.shape)}; check model.dit caption_channels against the encoder")
        if text_mask is not None and text_mask.shape != text.shape[:2]:
            raise ValueError(f"text_mask must be (B, L) = {tuple(text.shape[:2])}, got {tuple(text_mask.shape)}")
