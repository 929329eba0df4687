"""The Video-VAE losses of LTX-Video: KL, LPIPS (local backbone only), video DWT, (r)GAN, discriminators."""

from __future__ import annotations

import socket
import urllib.request

import pytest
import torch
from torch import nn

from ltx.losses.dwt import SUBBAND_NAMES, HaarTransform3d, VideoDWTLoss, haar_subbands_3d
from ltx.losses.gan import GAN_LOSS_TYPES, ReconstructionGANLoss, StandardGANLoss, adaptive_gan_weight
from ltx.losses.kl import KLLoss
from ltx.losses.perceptual import LPIPSLoss
from ltx.registry import DISCRIMINATORS, LOSSES

# ---- KL -------------------------------------------------------------------------------------------


def test_kl_is_zero_for_the_prior_and_positive_otherwise():
    kl = LOSSES.build("kl")
    mean, logvar = torch.zeros(2, 4, 3, 4, 4), torch.zeros(2, 4, 3, 4, 4)
    assert kl(mean, logvar).item() == pytest.approx(0.0, abs=1e-7)
    assert kl(mean + 0.5, logvar).item() > 0 and kl(mean, logvar - 1.0).item() > 0
    # mean 1, unit variance: 0.5 per channel, summed over 4 channels, averaged over B, F, H, W
    assert kl(torch.ones(2, 4, 3, 4, 4), logvar).item() == pytest.approx(2.0)


def test_kl_per_channel_has_one_value_per_channel_summing_to_the_loss():
    kl = KLLoss()
    mean, logvar = torch.randn(2, 5, 3, 4, 4), 0.5 * torch.randn(2, 5, 3, 4, 4)
    mean[:, 2] = 0.0
    logvar[:, 2] = 0.0  # channel 2 matches the prior exactly
    per_channel = kl.per_channel(mean, logvar)
    assert per_channel.shape == (5,) and per_channel[2].item() == pytest.approx(0.0, abs=1e-7)
    assert per_channel.sum().item() == pytest.approx(kl(mean, logvar).item(), rel=1e-5)


def test_kl_broadcasts_a_uniform_log_variance_channel():
    kl = KLLoss()
    mean, uniform = torch.randn(2, 6, 3, 4, 4), torch.randn(2, 1, 3, 4, 4)
    repeated = uniform.expand(-1, 6, -1, -1, -1)  # what the encoder's uniform log-variance produces
    assert kl(mean, uniform).item() == pytest.approx(kl(mean, repeated).item(), rel=1e-6)
    assert torch.allclose(kl.per_channel(mean, uniform), kl.per_channel(mean, repeated))
    with pytest.raises(ValueError, match="one channel"):
        kl(mean, torch.zeros(2, 3, 3, 4, 4))


def test_kl_gradients_reach_mean_and_uniform_logvar():
    mean, logvar = (
        torch.randn(1, 4, 1, 2, 2, requires_grad=True),
        torch.randn(1, 1, 1, 2, 2, requires_grad=True),
    )
    KLLoss()(mean, logvar).backward()
    # d/dmean of sum_C mean^2 / 2, averaged over the 4 positions
    assert torch.allclose(mean.grad, mean.detach() / 4)
    assert logvar.grad.shape == (1, 1, 1, 2, 2) and logvar.grad.abs().sum() > 0


# ---- LPIPS ----------------------------------------------------------------------------------------


def _refuse_network(*args, **kwargs):
    raise AssertionError("LPIPSLoss tried to reach the network")


@pytest.fixture(scope="module")
def no_network():
    """Any download (torch.hub, urllib, a socket connection) fails the test."""
    import torchvision._internally_replaced_utils as torchvision_download

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.hub, "load_state_dict_from_url", _refuse_network)
        patch.setattr(torch.hub, "download_url_to_file", _refuse_network)
        patch.setattr(torchvision_download, "load_state_dict_from_url", _refuse_network)
        patch.setattr(urllib.request, "urlopen", _refuse_network)
        patch.setattr(socket.socket, "connect", _refuse_network)
        yield


@pytest.fixture(scope="module")
def alexnet_files(tmp_path_factory, no_network) -> dict[str, object]:
    """Torchvision AlexNet ``features``, random weights, saved as full-model and features state dicts."""
    import torchvision

    with torch.device("meta"):  # torchvision's own module and key names, without initialising the classifier
        features = torchvision.models.alexnet(weights=None).features
    features = features.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    for parameter in features.parameters():
        nn.init.normal_(parameter, std=0.05, generator=generator)
    directory = tmp_path_factory.mktemp("backbones")
    full = {f"features.{key}": value for key, value in features.state_dict().items()}
    full["classifier.1.weight"] = torch.zeros(2, 2)  # classifier keys are ignored
    torch.save(full, directory / "alexnet.pth")
    torch.save(features.state_dict(), directory / "alexnet_features.pth")
    return {
        "full": directory / "alexnet.pth",
        "features": directory / "alexnet_features.pth",
        "state": features.state_dict(),
    }


@pytest.fixture(scope="module")
def lpips_loss(alexnet_files, no_network) -> LPIPSLoss:
    """AlexNet-LPIPS whose backbone comes from the full-model file."""
    return LOSSES.build("lpips", net="alex", backbone_path=str(alexnet_files["full"]))


def assert_backbone_loaded(loss: LPIPSLoss, expected: dict[str, torch.Tensor]) -> None:
    loaded = loss.model.net.state_dict()  # lpips keys: sliceK.<torchvision index>.weight
    for key, value in expected.items():
        matches = [name for name in loaded if name.endswith(f".{key}")]
        assert len(matches) == 1 and torch.equal(loaded[matches[0]], value), key


def test_lpips_refuses_to_run_without_a_backbone_unless_allowed(no_network):
    with pytest.raises(ValueError, match="needs backbone_path.*allow_random_backbone=True"):
        LPIPSLoss(net="alex")
    with pytest.raises(ValueError, match="Valid nets: vgg, alex"):
        LPIPSLoss(net="resnet", allow_random_backbone=True)
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        LPIPSLoss(net="alex", allow_random_backbone=True)


def test_lpips_loads_the_local_backbone_file(lpips_loss, alexnet_files, no_network):
    assert_backbone_loaded(lpips_loss, alexnet_files["state"])  # from the full-model state dict
    features_only = LPIPSLoss(net="alex", backbone_path=str(alexnet_files["features"]))
    assert_backbone_loaded(features_only, alexnet_files["state"])


def test_lpips_rejects_a_backbone_file_of_the_wrong_network(tmp_path, no_network):
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="lacks .* tensor"):
        LPIPSLoss(net="alex", backbone_path=str(tmp_path / "wrong.pth"))
    with pytest.raises(FileNotFoundError):
        LPIPSLoss(net="alex", backbone_path=str(tmp_path / "missing.pth"))


def test_lpips_is_zero_for_identical_inputs_and_differentiable(lpips_loss):
    torch.manual_seed(0)
    target = torch.rand(2, 3, 2, 32, 32) * 2 - 1
    prediction = (target + 0.3 * torch.randn_like(target)).clamp(-1, 1).requires_grad_()
    assert lpips_loss(target, target).item() == pytest.approx(0.0, abs=1e-7)
    value = lpips_loss(prediction, target)
    value.backward()
    assert value.item() > 0 and prediction.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in lpips_loss.parameters())
    images = lpips_loss(prediction[:, :, 0], target[:, :, 0])  # (B, 3, H, W) images
    assert images.ndim == 0 and images.item() > 0


def test_lpips_averages_frames_and_masks_whole_frames(lpips_loss):
    torch.manual_seed(0)
    target = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    prediction = (target + 0.3 * torch.randn_like(target)).clamp(-1, 1)
    per_frame = [lpips_loss(prediction[:, :, index], target[:, :, index]) for index in range(3)]
    assert lpips_loss(prediction, target).item() == pytest.approx(
        torch.stack(per_frame).mean().item(), rel=1e-5
    )
    mask = torch.tensor([False, True, True]).view(1, 1, 3, 1, 1)
    expected = (per_frame[1] + per_frame[2]).item() / 2
    assert lpips_loss(prediction, target, mask).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="select whole frames"):
        lpips_loss(prediction, target, torch.ones(1, 1, 3, 32, 32, dtype=torch.bool))


def test_lpips_stays_frozen_in_eval_and_out_of_checkpoints(lpips_loss):
    parent = nn.ModuleDict({"perceptual": lpips_loss, "head": nn.Linear(2, 2)})
    parent.train()
    assert lpips_loss.training and not lpips_loss.model.training
    assert not any(module.training for module in lpips_loss.model.modules())
    assert not any(parameter.requires_grad for parameter in lpips_loss.parameters())
    state = parent.state_dict()
    assert sorted(state) == ["head.bias", "head.weight"]
    parent.load_state_dict(state, strict=True)  # the frozen weights are not expected back
    parent.eval()


# ---- video DWT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 4, 17])
def test_constant_video_has_no_high_frequency_energy(frames):
    subbands = haar_subbands_3d(torch.full((1, 2, frames, 8, 8), 0.7))
    assert len(subbands) == len(SUBBAND_NAMES) == 8
    assert subbands[0].abs().sum() > 0
    for name, band in zip(SUBBAND_NAMES[1:], subbands[1:]):
        assert band.abs().max().item() < 1e-6, name


def test_haar_transform_preserves_energy_and_halves_every_axis():
    video = torch.randn(2, 3, 6, 8, 10)
    subbands = haar_subbands_3d(video)
    assert all(band.shape == (2, 3, 3, 4, 5) for band in subbands)
    energy = sum(band.double().pow(2).sum() for band in subbands)
    assert energy.item() == pytest.approx(video.double().pow(2).sum().item(), rel=1e-5)


def test_odd_frame_counts_repeat_the_first_frame():
    video = torch.randn(1, 1, 17, 4, 4)
    subbands = haar_subbands_3d(video)
    padded = haar_subbands_3d(torch.cat([video[:, :, :1], video], dim=2))  # (1, 1, 18, 4, 4)
    assert all(band.shape[2] == 9 for band in subbands)
    assert all(torch.allclose(band, expected) for band, expected in zip(subbands, padded))
    assert all(band[:, :, 0].abs().max() < 1e-6 for band in subbands[4:])  # pair (0, 0): no temporal detail


def test_checkerboard_error_lives_in_the_high_bands_only():
    target = torch.randn(1, 3, 4, 8, 8)
    checkerboard = (torch.arange(8).view(8, 1) + torch.arange(8).view(1, 8)) % 2 * 2.0 - 1.0  # (H, W) of +-1
    differences = [
        a - b for a, b in zip(haar_subbands_3d(target + 0.1 * checkerboard), haar_subbands_3d(target))
    ]
    assert differences[0].abs().max() < 1e-6 and max(d.abs().max() for d in differences[1:]) > 0.1


@pytest.mark.parametrize("shape", [(2, 3, 17, 8, 8), (1, 2, 6, 7, 9), (2, 1, 1, 5, 6)])
def test_haar_convolution_equals_pytorch_wavelets_in_values_and_gradients(shape):
    # forward() is a strided convolution whose filters are read off the library's transform; both paths
    # must give the same subbands (odd sizes zero-padded, odd frame counts repeating the first frame)
    transform = HaarTransform3d()
    video = torch.randn(shape).requires_grad_()
    weights = torch.randn(1, 1, 8, 1, 1, 1)  # a random weight per band: a linear read-out of the subbands
    fast = transform(video)
    reference = transform.library_transform(video)
    assert fast.shape == reference.shape and torch.allclose(fast, reference, atol=1e-6)
    (fast_grad,) = torch.autograd.grad((fast * weights).sum(), video)
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), video)
    assert torch.allclose(fast_grad, reference_grad, atol=1e-6)
    spatial, library_spatial = transform.spatial_subbands(video), transform.library_spatial_subbands(video)
    assert spatial.shape == library_spatial.shape and torch.allclose(spatial, library_spatial, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 17, 8, 8), (2, 3, 1, 8, 8), (2, 3, 8, 8), (1, 3, 5, 7, 9)])
def test_video_dwt_loss_is_zero_on_equal_inputs_positive_otherwise_and_differentiable(shape):
    loss = VideoDWTLoss()
    target = torch.randn(shape)
    prediction = (target + 0.1 * torch.randn_like(target)).requires_grad_()
    assert loss(target, target).item() == pytest.approx(0.0, abs=1e-7)
    value = loss(prediction, target)
    value.backward()
    assert value.item() > 0 and prediction.grad.abs().sum() > 0


def test_video_dwt_loss_equals_the_l1_between_the_subbands_of_each_input():
    # the loss transforms the difference once (the transform is linear): the same value as two transforms
    loss = VideoDWTLoss()
    target, prediction = torch.randn(2, 3, 9, 10, 6), torch.randn(2, 3, 9, 10, 6)
    separately = (loss.transform(prediction) - loss.transform(target)).abs().mean()
    assert loss(prediction, target).item() == pytest.approx(separately.item(), rel=1e-5)


def test_video_dwt_loss_of_one_frame_uses_the_spatial_subbands():
    loss = VideoDWTLoss()
    target, prediction = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    as_video = loss(prediction.unsqueeze(2), target.unsqueeze(2))  # (B, C, 1, H, W)
    spatial = loss.transform.spatial_subbands(prediction.unsqueeze(2)) - loss.transform.spatial_subbands(
        target.unsqueeze(2)
    )
    assert loss(prediction, target).item() == pytest.approx(as_video.item())
    assert as_video.item() == pytest.approx(spatial.abs().mean().item(), rel=1e-6)


def test_video_dwt_mask_drops_coefficients_touching_masked_pixels():
    loss = VideoDWTLoss()
    target = torch.zeros(1, 3, 4, 8, 8)
    prediction = target.clone()
    prediction[..., :4] = 1.0  # wrong on the left half only
    mask = torch.ones(1, 1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4] = False
    assert loss(prediction, target, mask).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(prediction, target).item() > 0


# ---- GAN objectives -------------------------------------------------------------------------------


def tiny_discriminator(objective: nn.Module, kind: str = "patchgan3d") -> nn.Module:
    return DISCRIMINATORS.build(
        kind, in_channels=objective.discriminator_in_channels(3), base_channels=4, num_layers=2
    )


class FirstHalfMean(nn.Module):
    """A discriminator whose logit is ``scale * mean`` of the first 3 channels: the whole RGB input of
    the standard GAN, the first video of the reconstruction GAN's pair."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x[:, :3].mean(dim=(1, 2, 3, 4)).view(-1, 1)  # (B, 3, F, H, W) -> (B, 1)


def test_gan_objectives_are_registered_with_their_channel_counts():
    assert isinstance(LOSSES.build("rgan"), ReconstructionGANLoss) and isinstance(
        LOSSES.build("gan"), StandardGANLoss
    )
    assert LOSSES.build("rgan").discriminator_in_channels(3) == 6
    assert LOSSES.build("gan").discriminator_in_channels(3) == 3
    with pytest.raises(ValueError, match="Valid loss types: hinge, non_saturating"):
        LOSSES.build("rgan", loss_type="wasserstein")
    with pytest.raises(ValueError, match="Valid modes: discriminator, generator"):
        LOSSES.build("gan")(
            FirstHalfMean(1.0), torch.zeros(1, 3, 1, 2, 2), torch.zeros(1, 3, 1, 2, 2), mode="both"
        )


def test_rgan_input_holds_the_original_and_reconstruction_of_the_same_sample():
    rgan = ReconstructionGANLoss()
    real, fake = torch.randn(32, 3, 2, 4, 4), torch.randn(32, 3, 2, 4, 4)
    inputs, real_first = rgan.pair_inputs(real, fake, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == (32, 6, 2, 4, 4) and real_first.shape == (32,) and real_first.dtype == torch.bool
    assert 0 < real_first.sum() < 32  # both orders occur
    for index in range(32):
        first, second = (real, fake) if real_first[index] else (fake, real)
        assert torch.equal(inputs[index, :3], first[index]) and torch.equal(inputs[index, 3:], second[index])
    again, again_first = rgan.pair_inputs(real, fake, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, inputs) and torch.equal(again_first, real_first)


@pytest.mark.parametrize("loss_type", GAN_LOSS_TYPES)
def test_rgan_rewards_a_discriminator_that_finds_the_original(loss_type):
    rgan = ReconstructionGANLoss(loss_type)
    real, fake = torch.ones(16, 3, 1, 2, 2), -torch.ones(16, 3, 1, 2, 2)
    knowing = FirstHalfMean(10.0)  # logit +10 when the original (ones) comes first, -10 otherwise
    assert rgan.discriminator_loss(knowing, real, fake).item() < 1e-4
    assert rgan.discriminator_loss(FirstHalfMean(-10.0), real, fake).item() > 5  # always wrong
    generator = rgan.generator_loss(knowing, real, fake).item()
    assert generator == pytest.approx(10.0, rel=1e-3)  # hinge: mean(s d) = 10; softplus(10) ~ 10


@pytest.mark.parametrize("loss_type", GAN_LOSS_TYPES)
def test_standard_gan_scores_one_sample_at_a_time(loss_type):
    gan = StandardGANLoss(loss_type)
    real, fake = torch.ones(4, 3, 1, 2, 2), -torch.ones(4, 3, 1, 2, 2)
    knowing = FirstHalfMean(10.0)  # logit +10 on originals, -10 on reconstructions
    assert gan.discriminator_loss(knowing, real, fake).item() < 1e-4
    assert gan.generator_loss(knowing, real, fake).item() == pytest.approx(10.0, rel=1e-3)


@pytest.mark.parametrize("name", ["gan", "rgan"])
@pytest.mark.parametrize("loss_type", GAN_LOSS_TYPES)
def test_gan_gradients_go_to_the_discriminator_or_the_generator_only(name, loss_type):
    torch.manual_seed(0)
    objective = LOSSES.build(name, loss_type=loss_type)
    discriminator = tiny_discriminator(objective)
    real = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    fake = (real + 0.3 * torch.randn_like(real)).requires_grad_()

    discriminator_loss = objective(discriminator, real, fake, mode="discriminator")
    discriminator_loss.backward()
    assert torch.isfinite(discriminator_loss) and fake.grad is None
    assert all(p.grad is not None for p in discriminator.parameters())  # the logit bias may get exactly 0
    assert sum(p.grad.abs().sum() for p in discriminator.parameters()) > 0

    discriminator.zero_grad(set_to_none=True)
    generator_loss = objective(discriminator, real, fake, mode="generator")
    generator_loss.backward()
    assert torch.isfinite(generator_loss) and fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in discriminator.parameters())
    assert all(p.requires_grad for p in discriminator.parameters())  # unfrozen again


def test_rgan_with_a_per_frame_discriminator_on_images():
    rgan = ReconstructionGANLoss()
    discriminator = tiny_discriminator(rgan, "patchgan2d")
    real, fake = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16, requires_grad=True)
    rgan.generator_loss(discriminator, real, fake).backward()
    assert fake.grad.abs().sum() > 0


def test_adaptive_gan_weight_is_a_detached_ratio_of_gradient_norms():
    torch.manual_seed(0)
    last_layer = nn.Conv3d(4, 3, 1)
    gan = StandardGANLoss()
    discriminator = tiny_discriminator(gan)
    target = torch.rand(1, 3, 3, 16, 16) * 2 - 1
    reconstruction = last_layer(torch.randn(1, 4, 3, 16, 16))  # (B, 3, F, H, W)
    reconstruction_loss = (reconstruction - target).abs().mean()
    generator_loss = gan.generator_loss(discriminator, target, reconstruction)
    weight = adaptive_gan_weight(reconstruction_loss, generator_loss, last_layer.weight)
    assert weight.ndim == 0 and torch.isfinite(weight) and weight.item() > 0 and not weight.requires_grad
    reconstruction_grad = torch.autograd.grad(reconstruction_loss, last_layer.weight, retain_graph=True)[0]
    generator_grad = torch.autograd.grad(generator_loss, last_layer.weight, retain_graph=True)[0]
    expected = reconstruction_grad.norm() / (generator_grad.norm() + 1e-4)
    assert weight.item() == pytest.approx(expected.item(), rel=1e-5)
    assert adaptive_gan_weight(
        reconstruction_loss, generator_loss, last_layer.weight, max_weight=1e-3
    ).item() == pytest.approx(1e-3)
    (reconstruction_loss + weight * generator_loss).backward()  # the graph is still there
    assert last_layer.weight.grad is not None


# ---- discriminators -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DISCRIMINATORS.names())
@pytest.mark.parametrize("objective", ["gan", "rgan"])
def test_every_discriminator_runs_forward_and_backward_on_videos_and_images(name, objective):
    torch.manual_seed(0)
    in_channels = LOSSES.build(objective).discriminator_in_channels(3)
    discriminator = DISCRIMINATORS.build(name, in_channels=in_channels, base_channels=4)
    for shape in [(1, in_channels, 17, 64, 64), (2, in_channels, 1, 64, 64), (2, in_channels, 64, 64)]:
        discriminator.zero_grad(set_to_none=True)
        logits = discriminator(torch.randn(shape))
        assert (
            logits.shape[:2] == (shape[0], 1) and logits.ndim == len(shape) and torch.isfinite(logits).all()
        )
        assert min(logits.shape[2:]) >= 1
        logits.square().mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in discriminator.parameters())


@pytest.mark.parametrize("name", DISCRIMINATORS.names())
def test_discriminator_options_and_input_checks(name):
    spectral = DISCRIMINATORS.build(
        name, in_channels=3, base_channels=4, num_layers=2, norm="none", spectral_norm=True
    )
    assert spectral(torch.randn(1, 3, 3, 16, 16)).shape[:2] == (1, 1)
    assert not any(isinstance(module, nn.GroupNorm) for module in spectral.modules())
    with pytest.raises(ValueError, match="Valid norms: group, none"):
        DISCRIMINATORS.build(name, in_channels=3, norm="batch")
    discriminator = DISCRIMINATORS.build(name, in_channels=6, base_channels=4, num_layers=3)
    with pytest.raises(ValueError, match=r"\(B, 6, \[F,\] H, W\) inputs with H, W >= 8"):
        discriminator(torch.randn(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match="H, W >= 8"):
        discriminator(torch.randn(1, 6, 3, 4, 4))
