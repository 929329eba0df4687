"""Building blocks shared by the VAE and the DiT."""
