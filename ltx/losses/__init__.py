"""Losses, each registered by name in ``ltx.registry.LOSSES``, and their weighted combination."""

from ltx.losses.discriminators import PatchGAN2d, PatchGAN3d
from ltx.losses.dwt import VideoDWTLoss, haar_subbands_3d
from ltx.losses.gan import ReconstructionGANLoss, StandardGANLoss, adaptive_gan_weight
from ltx.losses.kl import KLLoss
from ltx.losses.perceptual import LPIPSLoss
from ltx.losses.reconstruction import L1Loss, MSELoss
from ltx.losses.terms import WeightedLossTerms

__all__ = [
    "KLLoss",
    "L1Loss",
    "LPIPSLoss",
    "MSELoss",
    "PatchGAN2d",
    "PatchGAN3d",
    "ReconstructionGANLoss",
    "StandardGANLoss",
    "VideoDWTLoss",
    "WeightedLossTerms",
    "adaptive_gan_weight",
    "haar_subbands_3d",
]
