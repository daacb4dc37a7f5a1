import pytest
import torch

from varbook.imaging import GaussianBlur, Inpainting, SuperResolution, psnr, quality, ssim

OPS = [
    Inpainting.random(8, 0.5, torch.Generator().manual_seed(0)),
    SuperResolution(8, 2),
    SuperResolution(32, 4),
    GaussianBlur(8, 1.0),
    GaussianBlur(16, 2.0),
]


@pytest.mark.parametrize("op", OPS, ids=lambda o: type(o).__name__ + str(o.side))
def test_adjoint(op):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, op.n_in, dtype=torch.float64, generator=g)
    y = torch.randn(5, op.n_out, dtype=torch.float64, generator=g)
    torch.testing.assert_close((op(x) * y).sum(1), (x * op.T(y)).sum(1))
    torch.testing.assert_close(op.matrix() @ x[0], op(x)[0:1][0])


@pytest.mark.parametrize("op", OPS, ids=lambda o: type(o).__name__ + str(o.side))
def test_pseudo_inverse(op):
    # A A+ A = A, and A+ agrees with the Moore-Penrose inverse of the dense matrix where A has full row rank
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, op.n_in, dtype=torch.float64, generator=g)
    # the blur's pseudo-inverse drops frequencies with |k| < rcond, so A A+ A = A up to about rcond
    tol = 10 * op.rcond if isinstance(op, GaussianBlur) else 1e-10
    torch.testing.assert_close(op(op.pseudo_inverse(op(x))), op(x), atol=tol, rtol=0)
    if not isinstance(op, GaussianBlur):
        y = torch.randn(4, op.n_out, dtype=torch.float64, generator=g)
        torch.testing.assert_close(op.pseudo_inverse(y), y @ torch.linalg.pinv(op.matrix()).T)


def test_metrics():
    x = torch.rand(3, 64, dtype=torch.float64) * 2 - 1
    assert torch.isinf(psnr(x, x)).logical_not().all() and (psnr(x, x) > 190).all()
    noisy = x + 0.1
    torch.testing.assert_close(
        psnr(noisy, x), torch.full((3,), 10 * torch.log10(torch.tensor(4 / 0.01)).item(), dtype=torch.float64)
    )
    torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=torch.float64))
    assert (ssim(x + 0.5 * torch.randn_like(x), x) < 0.9).all()
    with pytest.raises(ValueError, match="shape"):
        psnr(x, x[:, :10])


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        Inpainting(torch.ones(10, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiple"):
        SuperResolution(8, 3)
    with pytest.raises(ValueError, match="shape"):
        SuperResolution(8, 2)(torch.zeros(2, 63))
    with pytest.raises(ValueError, match="keeps no pixel"):
        Inpainting(torch.zeros(64, dtype=torch.bool))


def test_quality_is_the_mean_psnr_and_ssim():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 64, dtype=torch.float64, generator=g) * 2 - 1
    noisy = x + 0.1 * torch.randn(3, 64, dtype=torch.float64, generator=g)
    q = quality(noisy, x)
    assert set(q) == {"PSNR", "SSIM"}
    assert q["PSNR"] == pytest.approx(float(psnr(noisy, x).mean()))
    assert q["SSIM"] == pytest.approx(float(ssim(noisy, x).mean()))
    assert quality(x, x)["SSIM"] == pytest.approx(1.0)
