import pytest
import torch

from varbook.imaging import BatchInpainting, GaussianBlur, Inpainting, SuperResolution, psnr, quality, ssim

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


def test_batch_inpainting_gives_every_image_its_own_mask():
    g = torch.Generator().manual_seed(3)
    op = BatchInpainting.random(200, 8, 0.5, g)
    masks = op.masks
    assert op.n_out == 32 and (masks.sum(1) == 32).all()  # exactly half of the pixels of every image
    assert len({tuple(r) for r in op.index.tolist()}) == 200  # no two masks alike
    # each pixel is kept with probability 1/2: its frequency over 200 masks within 4 standard errors
    freq = masks.double().mean(0)
    assert ((freq - 0.5).abs() < 4 * (0.25 / 200) ** 0.5).all()
    x = torch.randn(200, 64, dtype=torch.float64, generator=g)
    y = torch.randn(200, 32, dtype=torch.float64, generator=g)
    torch.testing.assert_close((op(x) * y).sum(1), (x * op.T(y)).sum(1))  # adjoint
    for i in (0, 7, 199):  # row i is the single-mask operator of image i
        single = op.image(i)
        torch.testing.assert_close(op(x)[i], single(x[i : i + 1])[0])
        torch.testing.assert_close(op.pseudo_inverse(y)[i], single.pseudo_inverse(y[i : i + 1])[0])
    torch.testing.assert_close(op[5:9](x[5:9]), op(x)[5:9])
    with pytest.raises(ValueError, match="batch"):
        op(x[:10])
    with pytest.raises(TypeError, match="per image"):
        op.matrix()
    with pytest.raises(ValueError, match="indices"):
        BatchInpainting(torch.tensor([[0, 64]]), 8)
