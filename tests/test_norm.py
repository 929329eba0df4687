"""The RMSNorm with a closed-form CPU backward against torch's ``F.rms_norm`` (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ltx.models.common.norm import RMSNorm, rms_norm


def reference(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


@pytest.mark.parametrize("with_weight", [True, False])
def test_closed_form_backward_passes_gradcheck(with_weight: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 16, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(16, dtype=torch.float64, generator=generator, requires_grad=True) if with_weight else None
    inputs = (x, weight) if with_weight else (x,)
    assert torch.autograd.gradcheck(lambda *a: rms_norm(a[0], a[1] if with_weight else None, 1e-6), inputs)
    out = rms_norm(x, weight, 1e-6)
    assert "RMSNormFunction" in type(out.grad_fn).__name__  # the closed form ran, not F.rms_norm
    grad = torch.randn(out.shape, dtype=torch.float64, generator=generator)
    ours = torch.autograd.grad(out, inputs, grad)
    expected = torch.autograd.grad(reference(*inputs, 1e-6) if with_weight else reference(x, None, 1e-6), inputs, grad)
    for got, want in zip(ours, expected, strict=True):
        torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 7, 32), (1, 64, 48), (4, 32)])
def test_matches_torch_rms_norm_in_fp32(shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(1)
    x = (3 * torch.randn(shape, generator=generator)).requires_grad_()
    norm = RMSNorm(shape[-1], eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.3, generator=generator)
    out = norm(x)
    expected = reference(x, norm.weight, 1e-5)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    grad = torch.randn(out.shape, generator=generator)
    ours = torch.autograd.grad(out, (x, norm.weight), grad)
    wanted = torch.autograd.grad(expected, (x, norm.weight), grad)
    for got, want in zip(ours, wanted, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_non_contiguous_input_and_reduced_precision() -> None:
    generator = torch.Generator().manual_seed(2)
    base = torch.randn(6, 4, 32, generator=generator)
    x = base.transpose(0, 1).requires_grad_()  # non-contiguous (4, 6, 32)
    out = rms_norm(x, None, 1e-6)
    torch.testing.assert_close(out, reference(x.detach(), None, 1e-6), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert x.grad.shape == x.shape

    half = torch.randn(3, 9, 32, generator=generator).bfloat16().requires_grad_()
    weight = torch.rand(32, generator=generator).add_(0.5).requires_grad_()  # fp32 weight, as under autocast
    out = rms_norm(half, weight, 1e-6)
    assert out.dtype == torch.bfloat16
    expected = reference(half.detach().float(), weight.detach(), 1e-6)
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
    out.float().sum().backward()
    assert half.grad.dtype == torch.bfloat16 and weight.grad.dtype == torch.float32


def test_inference_and_wrong_width() -> None:
    norm = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        out = norm(torch.randn(2, 8, requires_grad=True))
    assert out.grad_fn is None
    with pytest.raises(ValueError, match="RMSNorm over"):
        norm(torch.randn(2, 9))
