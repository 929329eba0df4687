"""Token positions (a pure function of the latent grid, fps and the scheme) and rotary embeddings."""

from ltx.positional.coordinates import LatentGrid, latent_grid_indices, token_coordinates
from ltx.positional.rope import apply_rotary_embedding, rope_frequencies, rotary_embedding

__all__ = [
    "LatentGrid", "apply_rotary_embedding", "latent_grid_indices", "rope_frequencies", "rotary_embedding",
    "token_coordinates",
]
