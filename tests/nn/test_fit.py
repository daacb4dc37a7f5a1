import pytest
import torch

from varbook.nn import MLP, train_steps
from varbook.runtime import History


def test_train_steps_reduces_a_regression_loss():
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    y = x @ torch.tensor([[1.0], [-2.0]])
    model = MLP(2, [16], 1)
    history = train_steps(model, lambda a, b: ((model(a) - b) ** 2).mean(), (x, y), steps=200, batch_size=64, lr=1e-2)
    assert isinstance(history, History) and list(history) == ["loss"]
    losses = history["loss"]
    assert len(losses) == 200 and history.last("loss") < 0.1 * losses[0]
    assert model.features(x).shape == (256, 16)
    with pytest.raises(ValueError, match="same number of rows"):
        train_steps(model, lambda a, b: a.sum(), (x, y[:10]), steps=1, batch_size=4)


def test_train_steps_stops_on_a_non_finite_loss():
    from varbook.runtime import NonFiniteLossError

    model = MLP(2, [4], 1)
    x = torch.randn(16, 2)
    with pytest.raises(NonFiniteLossError, match="toy loss"):
        train_steps(model, lambda a: model(a).sum() * float("nan"), (x,), steps=3, batch_size=4, desc="toy")
    with pytest.raises(NonFiniteLossError, match="training loss became nan at step 0"):
        train_steps(model, lambda a: model(a).sum() * float("nan"), (x,), steps=3, batch_size=4)


def test_train_steps_is_silent_without_desc_and_reproducible_with_a_generator(capsys, monkeypatch):
    monkeypatch.delenv("VARBOOK_BATCH", raising=False)
    x = torch.randn(64, 2)

    def run(desc):
        torch.manual_seed(1)
        model = MLP(2, [4], 1)
        loss = lambda a: (model(a) ** 2).mean()  # noqa: E731
        return train_steps(
            model, loss, (x,), steps=5, batch_size=8, desc=desc, generator=torch.Generator().manual_seed(2)
        )

    silent = run(None)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    shown = run("toy")
    assert "toy" in capsys.readouterr().err
    assert silent == shown  # the same draws and steps whether or not a bar is shown


def test_fit_classifier_separates_two_blobs():
    from varbook.nn import fit_classifier

    torch.manual_seed(0)
    x = torch.cat([torch.randn(200, 3) + 2, torch.randn(200, 3) - 2])
    y = torch.cat([torch.zeros(200), torch.ones(200)]).long()
    model = fit_classifier(x, y, hidden=(16,), steps=200, batch_size=64, desc=None)
    assert float((model(x).argmax(1) == y).float().mean()) > 0.95
    with pytest.raises(ValueError, match="flat inputs"):
        fit_classifier(x.reshape(400, 3, 1), y)
