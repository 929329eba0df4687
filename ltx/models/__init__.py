"""Plain-PyTorch models: no Lightning, Hydra or torch.distributed imports in this package."""
