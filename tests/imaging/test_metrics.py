import pytest
import torch

from varbook.imaging import psnr, quality, ssim

skm = pytest.importorskip("skimage.metrics")


def _images(kind: str, side: int, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference images in [-1, 1] and noisy, shifted, blurred versions of them."""
    g = torch.Generator().manual_seed(side)
    if kind == "random":
        ref = torch.rand(n, side * side, dtype=torch.float64, generator=g) * 2 - 1
    elif kind == "digits":
        from sklearn.datasets import load_digits

        ref = torch.as_tensor(load_digits().data[:n] / 16.0) * 2 - 1
    else:  # crops of scikit-image's camera man
        from skimage import data

        cam = torch.as_tensor(data.camera() / 255.0)
        ref = torch.stack([cam[40 * i : 40 * i + side, 60 * i : 60 * i + side] for i in range(n)]).flatten(1) * 2 - 1
    noise = torch.randn(ref.shape, dtype=torch.float64, generator=g)
    x = (ref + 0.3 * noise * torch.linspace(0.1, 1, n, dtype=torch.float64)[:, None] + 0.05).clamp(-1, 1)
    return x, ref


@pytest.mark.parametrize("kind,side", [("random", 8), ("random", 16), ("digits", 8), ("camera", 32), ("camera", 64)])
def test_ssim_and_psnr_equal_scikit_image(kind, side):
    x, ref = _images(kind, side)  # in [-1, 1]
    ours_s, ours_p = ssim(x, ref, value_range=(-1, 1)), psnr(x, ref, value_range=(-1, 1))
    for i in range(len(x)):
        a, b = (x[i].reshape(side, side).numpy() + 1) / 2, (ref[i].reshape(side, side).numpy() + 1) / 2
        assert float(ours_s[i]) == pytest.approx(skm.structural_similarity(b, a, data_range=1.0), abs=1e-10)
        assert float(ours_p[i]) == pytest.approx(skm.peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-10)
        # uint8-style images in [0, 255] give the same numbers
        assert float(ours_s[i]) == pytest.approx(skm.structural_similarity(255 * b, 255 * a, data_range=255.0))
        if side >= 11:  # the Gaussian window of Wang et al. (11 taps, population variances)
            kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
            ours_g = ssim(x[i : i + 1], ref[i : i + 1], **kw)
            assert float(ours_g) == pytest.approx(skm.structural_similarity(b, a, data_range=1.0, **kw), abs=1e-10)
    # the pitfall: SSIM is not shift-invariant, so [-1, 1] images scored with data_range=2 give other numbers
    a, b = x[0].reshape(side, side).numpy(), ref[0].reshape(side, side).numpy()
    assert abs(skm.structural_similarity(b, a, data_range=2.0) - float(ours_s[0])) > 1e-3


def test_ssim_averages_only_the_windows_inside_the_image():
    # scikit-image crops a border of (win_size - 1) // 2 from the SSIM map; an SSIM map averaged over every
    # pixel of a padded image (the old definition) differs from it on the same images
    x, ref = _images("camera", 32)
    full_map = skm.structural_similarity(
        (ref[0].reshape(32, 32).numpy() + 1) / 2, (x[0].reshape(32, 32).numpy() + 1) / 2, data_range=1.0, full=True
    )[1]
    assert float(ssim(x[:1], ref[:1])) == pytest.approx(full_map[3:-3, 3:-3].mean(), abs=1e-10)
    assert abs(float(ssim(x[:1], ref[:1])) - full_map.mean()) > 1e-3


def test_metrics_are_batched_float32_and_torch_facing():
    x, ref = _images("camera", 32)
    s32 = ssim(x.float(), ref.float())
    assert s32.dtype == torch.float32 and s32.shape == (len(x),)
    torch.testing.assert_close(s32.double(), ssim(x, ref), atol=1e-6, rtol=0)
    q = quality(x, ref)
    assert q == pytest.approx({"PSNR": float(psnr(x, ref).mean()), "SSIM": float(ssim(x, ref).mean())})
    assert float(psnr(ref, ref)[0]) == pytest.approx(200.0)  # the MSE is clamped at 1e-20: finite
    # the range is explicit: images in [0, 1] scored as such give the numbers of the same images in [-1, 1]
    torch.testing.assert_close(ssim((x + 1) / 2, (ref + 1) / 2, value_range=(0, 1)), ssim(x, ref))
    torch.testing.assert_close(psnr((x + 1) / 2, (ref + 1) / 2, value_range=(0, 1)), psnr(x, ref))


def test_metric_bad_input():
    x = torch.zeros(2, 64)
    with pytest.raises(ValueError, match="window"):
        ssim(torch.zeros(2, 36), torch.zeros(2, 36), win_size=7)  # 6x6 images
    with pytest.raises(ValueError, match="window"):
        ssim(x, x, gaussian_weights=True)  # 11 taps on 8x8 images
    with pytest.raises(ValueError, match="square"):
        ssim(torch.zeros(2, 60), torch.zeros(2, 60))
    with pytest.raises(ValueError, match="value_range"):
        psnr(x, x, value_range=(1, 1))
