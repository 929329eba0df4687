"""LPIPS perceptual loss on video frames, with the backbone loaded from a local file (never downloaded)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ltx.losses.reconstruction import masked_mean
from ltx.registry import LOSSES

LPIPS_NETS = ("vgg", "alex")
_TORCHVISION_PRETRAINED_WARNINGS = (
    r"(The parameter 'pretrained' is deprecated|Arguments other than a weight enum)"
)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``torch.save``d state dict (loaded ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS backbone file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{str(path)!r} does not hold a state dict (got a {type(state).__name__})")
    return dict(state)


def backbone_state_for_lpips(
    state: Mapping[str, torch.Tensor], backbone: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename a torchvision VGG16 / AlexNet state dict to the keys of lpips' sliced backbone.

    lpips splits torchvision's ``features`` into ``slice1..slice5`` that keep the original layer
    indices (``features.5.weight`` becomes ``slice2.5.weight``). Accepted inputs: the full torchvision
    state dict (``features.N.*``, classifier keys are ignored), the ``features`` state dict alone
    (``N.*``), or keys already in lpips form (``sliceK.N.*``).
    """
    slice_of_layer = {
        layer: slice_name
        for slice_name, block in backbone.named_children()
        for layer, _ in block.named_children()
    }
    expected = set(backbone.state_dict())
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.").removeprefix("net.")
        if key in expected:
            renamed[key] = value
            continue
        key = key.removeprefix("features.")
        layer, _, parameter = key.partition(".")
        if layer in slice_of_layer:
            renamed[f"{slice_of_layer[layer]}.{layer}.{parameter}"] = value
    missing = sorted(expected - set(renamed))
    if missing:
        raise ValueError(
            f"the LPIPS backbone file lacks {len(missing)} tensor(s) the backbone needs, e.g. {missing[:4]}; "
            "give the torchvision state dict of the same network (vgg16 for net=vgg, alexnet for net=alex)"
        )
    return renamed


@LOSSES.register("lpips")
class LPIPSLoss(nn.Module):
    """Mean LPIPS distance between the frames of two videos (or two images) in [-1, 1], frozen.

    Args:
        net: the backbone, ``"vgg"`` (the usual choice for a training loss) or ``"alex"`` (lighter).
        backbone_path: a local file with the torchvision ImageNet weights of that backbone (the full
            ``vgg16()`` / ``alexnet()`` state dict or its ``features`` part), as ``torch.save`` output
            or ``.safetensors``. The LPIPS linear heads ship inside the ``lpips`` package.
        allow_random_backbone: with no ``backbone_path``, keep a randomly initialised backbone (with a
            loud warning) instead of refusing. Only meant for tests and smoke runs: the loss is then
            not perceptual.

    The lpips package downloads the backbone by default; here it is always built with a random
    trunk (``pnet_rand=True``) and the weights come from ``backbone_path`` only. The LPIPS network
    stays frozen and in eval mode even when the parent module is put in training mode, and it is
    left out of ``state_dict()`` so checkpoints do not carry its ~60 MB of fixed weights.
    """

    def __init__(
        self, net: str = "vgg", backbone_path: str | None = None, allow_random_backbone: bool = False
    ):
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"unknown LPIPS net {net!r}. Valid nets: {', '.join(LPIPS_NETS)}.")
        if backbone_path is None and not allow_random_backbone:
            torchvision_name = "vgg16" if net == "vgg" else "alexnet"
            raise ValueError(
                f"LPIPSLoss(net={net!r}) needs backbone_path: a local file with torchvision's ImageNet "
                f"{torchvision_name} weights, e.g. written on a machine with network access by "
                f"torch.save(torchvision.models.{torchvision_name}(weights='DEFAULT').state_dict(), path). "
                "Nothing is downloaded here. Pass allow_random_backbone=True to run with a random "
                "backbone (tests only: the loss is then not perceptual)."
            )
        state = None if backbone_path is None else load_state_dict_file(backbone_path)  # fail before building
        import lpips  # deferred: it imports torchvision, which makes `import ltx.losses` slow

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_TORCHVISION_PRETRAINED_WARNINGS, category=UserWarning)
            self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        self.net_name = net
        self.backbone_path = backbone_path
        if state is None:
            message = (
                f"LPIPSLoss(net={net!r}) is using a RANDOMLY INITIALISED backbone "
                "(allow_random_backbone=True): its values are not a perceptual distance. Set backbone_path "
                "for real training."
            )
            warnings.warn(message, UserWarning, stacklevel=2)
        else:
            self.model.net.load_state_dict(backbone_state_for_lpips(state, self.model.net), strict=True)
        self.model.requires_grad_(False)
        self.model.eval()
        self._frozen_keys = frozenset(f"model.{key}" for key in self.model.state_dict())
        self.register_state_dict_post_hook(_drop_frozen_lpips_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_frozen_lpips_keys)

    def train(self, mode: bool = True) -> LPIPSLoss:
        """Set training mode on this module while the frozen LPIPS network stays in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean LPIPS over every frame; ``mask`` (optional, broadcast to ``(B, 1, F, 1, 1)``) selects frames.

        Videos are ``(B, 3, F, H, W)``, images ``(B, 3, H, W)``, all in [-1, 1]. Gradients flow to
        ``prediction`` (and ``target``) but never into the LPIPS weights.
        """
        if prediction.shape != target.shape or prediction.ndim not in (4, 5) or prediction.shape[1] != 3:
            raise ValueError(
                f"LPIPS takes (B, 3, F, H, W) videos or (B, 3, H, W) images of equal shapes; got "
                f"{tuple(prediction.shape)} and {tuple(target.shape)}"
            )
        frame_mask = _frame_mask(mask, prediction)  # (B, F) or None
        if prediction.ndim == 5:
            batch, channels, frames, height, width = prediction.shape
            frames_shape = (batch * frames, channels, height, width)
            prediction = prediction.transpose(1, 2).reshape(frames_shape)  # (B*F, 3, H, W)
            target = target.transpose(1, 2).reshape(frames_shape)  # (B*F, 3, H, W)
        distances = self.model(prediction, target).flatten()  # (B*F, 1, 1, 1) -> (B*F,)
        if frame_mask is None:
            return distances.mean()
        return masked_mean(distances.view(frame_mask.shape), frame_mask)  # per sample over its frames


def _frame_mask(mask: torch.Tensor | None, video: torch.Tensor) -> torch.Tensor | None:
    """A per-frame mask ``(B, F)`` (``(B, 1)`` for images) from one that broadcasts to ``(B, 1, F, 1, 1)``."""
    if mask is None:
        return None
    batch = video.shape[0]
    frames = video.shape[2] if video.ndim == 5 else 1
    shape = (batch, 1, frames, 1, 1) if video.ndim == 5 else (batch, 1, 1, 1)
    try:
        expanded = mask.expand(shape)  # (B, 1, F, 1, 1) or (B, 1, 1, 1)
    except RuntimeError:
        raise ValueError(
            f"LPIPS masks select whole frames: the mask must broadcast to {shape}; got {tuple(mask.shape)}"
        ) from None
    return expanded.reshape(batch, frames)  # (B, F)


def _drop_frozen_lpips_keys(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
) -> None:
    """``state_dict`` hook: leave the frozen LPIPS weights (rebuilt from package + backbone file) out."""
    for key in [key for key in state_dict if key.startswith(prefix + "model.")]:
        del state_dict[key]


def _ignore_missing_frozen_lpips_keys(module: nn.Module, incompatible_keys: Any) -> None:
    """``load_state_dict`` hook: the frozen LPIPS weights are absent from checkpoints by design."""

    def is_frozen(key: str) -> bool:
        parts = key.split(".")
        return any(".".join(parts[start:]) in module._frozen_keys for start in range(len(parts)))

    incompatible_keys.missing_keys[:] = [key for key in incompatible_keys.missing_keys if not is_frozen(key)]
