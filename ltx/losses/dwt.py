"""The video DWT loss of LTX-Video: L1 between the 8 subbands of a one-level 3D Haar wavelet transform."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ltx.losses.reconstruction import masked_mean
from ltx.registry import LOSSES


def _pytorch_wavelets():
    """pytorch_wavelets, imported at first use (it needs PyWavelets and setuptools' pkg_resources, which
    training without the DWT loss, e.g. the GPU check in benchmarks/gpu_check.py, does not)."""
    with warnings.catch_warnings():  # pytorch_wavelets' dtcwt module imports the deprecated pkg_resources
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import pytorch_wavelets

    return pytorch_wavelets

# Subband order of `haar_subbands_3d`: temporal band first (L/H), then the spatial band in
# pytorch_wavelets' order (ll, then its three detail bands lh, hl, hh). Index 0 is the all-low band.
SUBBAND_NAMES = ("l_ll", "l_lh", "l_hl", "l_hh", "h_ll", "h_lh", "h_hl", "h_hh")


class HaarTransform3d(nn.Module):
    """One-level 3D Haar DWT: a 2D DWT of every frame, then a 1D DWT along time of every 2D subband.

    pytorch_wavelets defines the transform (``library_transform``); ``forward`` applies the same linear
    map as one strided convolution whose 2x2x2 filters are read off the library's transform of the 8 unit
    impulses at construction. Equal values (tests pin both paths to each other); the convolution's
    backward is ~6x faster on CPU than the library's per-axis autograd functions.
    """

    def __init__(self):
        super().__init__()
        wavelets = _pytorch_wavelets()
        self.spatial = wavelets.DWTForward(J=1, wave="haar", mode="zero")
        self.temporal = wavelets.DWT1DForward(J=1, wave="haar", mode="zero")
        with torch.no_grad():
            impulses = torch.eye(8).reshape(8, 1, 2, 2, 2)  # (8 positions, C=1, F=2, H=2, W=2)
            response = self.library_transform(impulses).reshape(8, 8)  # (position, band)
            self.register_buffer("filters_3d", response.t().reshape(8, 1, 2, 2, 2).contiguous(), persistent=False)
            impulses = torch.eye(4).reshape(4, 1, 1, 2, 2)  # (4 positions, C=1, F=1, H=2, W=2)
            response = self.library_spatial_subbands(impulses).reshape(4, 4)  # (position, band)
            self.register_buffer("filters_2d", response.t().reshape(4, 1, 1, 2, 2).contiguous(), persistent=False)

    def _filter(self, video: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
        """``(B, C, F, H, W)`` (even F for the 3D filters) -> ``(B, C, bands, F', H', W')``; odd H, W get a
        zero row / column at the end, as pytorch_wavelets' ``mode="zero"`` pads them."""
        batch, channels, frames, height, width = video.shape
        video = F.pad(video.to(filters.dtype), (0, width % 2, 0, height % 2))  # (B, C, F, H'', W'') even H'', W''
        stride = tuple(filters.shape[-3:])
        bands = F.conv3d(video.reshape(batch * channels, 1, *video.shape[2:]), filters, stride=stride)
        return bands.reshape(batch, channels, filters.shape[0], *bands.shape[2:])  # (B, C, bands, F', H', W')

    def spatial_subbands(self, video: torch.Tensor) -> torch.Tensor:
        """The 4 spatial subbands of every frame: ``(B, C, F, H, W) -> (B, C, 4, F, H', W')``.

        ``H' = ceil(H / 2)``: odd sizes are zero-padded (pytorch_wavelets' ``mode="zero"``). Computed
        in the filters' dtype (float32 unless the module was cast), so bf16 inputs are upcast.
        """
        return self._filter(video, self.filters_2d)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """The 8 subbands stacked: ``(B, C, F, H, W) -> (B, C, 8, F', H', W')``, ``F' = ceil(F / 2)``.

        Videos of LTX-Video have ``F = 1 + 8k`` frames. An odd ``F`` is made even by repeating the
        FIRST frame, the same padding as the causal VAE encoder, so the time pairs are (0, 0), (1, 2),
        ..., (F-2, F-1): frame 0 (encoded alone by the causal VAE) is never mixed with frame 1, and the
        transform of the padded clip stays orthonormal (the pair (0, 0) has no temporal detail).
        """
        return self._filter(self._even_frames(video), self.filters_3d)

    @staticmethod
    def _even_frames(video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5:
            raise ValueError(f"expected a video (B, C, F, H, W); got shape {tuple(video.shape)}")
        if video.shape[2] % 2:
            video = torch.cat([video[:, :, :1], video], dim=2)  # (B, C, F+1, H, W)
        return video

    def library_spatial_subbands(self, video: torch.Tensor) -> torch.Tensor:
        """``spatial_subbands`` by pytorch_wavelets' ``DWTForward`` (the definition ``filters_2d`` is read from)."""
        batch, channels, frames, height, width = video.shape
        frames_2d = video.transpose(1, 2).reshape(batch * frames, channels, height, width)  # (B*F, C, H, W)
        frames_2d = frames_2d.to(self.spatial.h0_col.dtype)
        low, (high,) = self.spatial(frames_2d)  # (B*F, C, H', W'), (B*F, C, 3, H', W')
        bands = torch.cat([low.unsqueeze(2), high], dim=2)  # (B*F, C, 4, H', W')
        bands = bands.reshape(batch, frames, channels, 4, *bands.shape[-2:])  # (B, F, C, 4, H', W')
        return bands.permute(0, 2, 3, 1, 4, 5)  # (B, C, 4, F, H', W')

    def library_transform(self, video: torch.Tensor) -> torch.Tensor:
        """``forward`` by pytorch_wavelets: ``DWTForward`` per frame, then ``DWT1DForward`` along time."""
        video = self._even_frames(video)
        bands = self.library_spatial_subbands(video)  # (B, C, 4, F, H', W')
        batch, channels, _, frames, height, width = bands.shape
        series = bands.permute(0, 1, 2, 4, 5, 3).reshape(-1, 1, frames)  # (B*C*4*H'*W', 1, F)
        low, (high,) = self.temporal(series)  # (N, 1, F'), (N, 1, F')
        time_bands = torch.stack([low, high], dim=1)  # (N, 2, 1, F')
        time_bands = time_bands.reshape(batch, channels, 4, height, width, 2, -1)  # (B, C, 4, H', W', 2, F')
        time_bands = time_bands.permute(0, 1, 5, 2, 6, 3, 4)  # (B, C, 2, 4, F', H', W')
        return time_bands.reshape(batch, channels, 8, -1, height, width)  # (B, C, 8, F', H', W')


def haar_subbands_3d(video: torch.Tensor) -> list[torch.Tensor]:
    """The 8 subbands ``(B, C, F', H', W')`` of a one-level 3D Haar DWT, ordered as ``SUBBAND_NAMES``.

    Index 0 is the low-pass band, indices 1..7 the high-frequency bands the LTX-Video paper's DWT loss
    targets (arXiv 2501.00103, sec. 3.1). Odd frame counts repeat the first frame (see
    ``HaarTransform3d.forward``); for ``F == 1`` the four temporal-detail bands are therefore zero.
    """
    transform = HaarTransform3d().to(video.device)
    return list(transform(video).unbind(dim=2))  # 8 x (B, C, F', H', W')


@LOSSES.register("video_dwt")
class VideoDWTLoss(nn.Module):
    """Mean L1 between the 3D Haar subbands of reconstruction and target (LTX-Video's DWT loss).

    Video ``(B, C, F, H, W)`` with ``F > 1``: the 8 subbands of ``HaarTransform3d``. Images, given
    as ``(B, C, H, W)`` or as one-frame videos: only the 4 spatial subbands, since a time transform
    of a single frame carries no information (its detail bands are zero and would only dilute the
    mean). All subbands have the same size, so the value is the mean absolute difference over every
    coefficient. ``mask`` (optional, broadcastable to ``(B, 1, F, H, W)``) keeps a coefficient only
    when every input position of its 2x2x2 block is kept.
    """

    def __init__(self):
        super().__init__()
        self.transform = HaarTransform3d()

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if prediction.shape != target.shape or prediction.ndim not in (4, 5):
            raise ValueError(
                f"expected videos (B, C, F, H, W) or images (B, C, H, W) of equal shapes; got "
                f"{tuple(prediction.shape)} and {tuple(target.shape)}"
            )
        if prediction.ndim == 4:
            prediction, target = prediction.unsqueeze(2), target.unsqueeze(2)  # (B, C, 1, H, W)
            mask = None if mask is None else mask.unsqueeze(2)  # (B, 1, 1, H, W)
        # The transform is linear (zero padding and the repeated first frame included), so the subbands of
        # the difference are the difference of the subbands: one transform instead of two.
        error = prediction - target
        if prediction.shape[2] == 1:
            difference = self.transform.spatial_subbands(error)  # (B, C, 4, 1, H', W')
        else:
            difference = self.transform(error)  # (B, C, 8, F', H', W')
        if mask is None:
            return difference.abs().mean()
        return masked_mean(difference.abs(), _subband_mask(mask, prediction))


def _subband_mask(mask: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """A coefficient mask ``(B, 1, 1, F', H', W')``: true where the whole 2x2x2 input block is true."""
    batch, _, frames, height, width = video.shape
    keep = mask.to(torch.float32).expand(batch, 1, frames, height, width)  # (B, 1, F, H, W)
    if frames > 1 and frames % 2:
        keep = torch.cat([keep[:, :, :1], keep], dim=2)  # (B, 1, F+1, H, W), as in HaarTransform3d
    # zero padding contributes equally to both inputs, so padded positions count as kept
    keep = F.pad(keep, (0, width % 2, 0, height % 2), value=1.0)  # (B, 1, F, H'', W'') even H'', W''
    kernel = (2 if frames > 1 else 1, 2, 2)
    keep = -F.max_pool3d(-keep, kernel_size=kernel, stride=kernel)  # (B, 1, F', H', W'): min over blocks
    return keep.unsqueeze(2) > 0.5  # (B, 1, 1, F', H', W')
