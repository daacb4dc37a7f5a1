import pytest
import torch

from varbook.nn.transformer import TinyTransformer


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "none"])
def test_causal_mask_blocks_the_future(positional):
    torch.manual_seed(0)
    model = TinyTransformer(11, d_model=16, n_layers=2, n_heads=2, max_len=12, positional=positional).eval()
    x = torch.randint(11, (1, 10))
    y = x.clone()
    y[0, 6:] = (y[0, 6:] + 1) % 11  # change only the future of position 5
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[0, :6], b[0, :6], atol=1e-6)
    assert not torch.allclose(a[0, 6:], b[0, 6:])


def test_bidirectional_sees_everything_and_shapes():
    torch.manual_seed(1)
    model = TinyTransformer(5, d_model=8, n_layers=1, n_heads=2, max_len=6, causal=False, n_out=3).eval()
    x = torch.randint(5, (2, 6))
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % 5
    with torch.no_grad():
        out, residual = model(x, return_residual=True)
        assert out.shape == (2, 6, 3) and len(residual) == 1 and residual[0].shape == (2, 6, 8)
        assert not torch.allclose(model(x)[:, 0], model(y)[:, 0])


def test_padding_mask_and_errors():
    torch.manual_seed(2)
    model = TinyTransformer(5, d_model=8, n_layers=1, n_heads=2, max_len=6, causal=False).eval()
    x = torch.randint(5, (1, 6))
    mask = torch.tensor([[True, True, True, True, False, False]])
    y = x.clone()
    y[0, 4:] = (y[0, 4:] + 2) % 5
    with torch.no_grad():
        assert torch.allclose(model(x, mask)[0, :4], model(y, mask)[0, :4], atol=1e-6)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        TinyTransformer(5, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="positional"):
        TinyTransformer(5, positional="rotary")


def test_linear_factory_is_used():
    roles = []

    def factory(i, o, role):
        roles.append(role)
        return torch.nn.Linear(i, o)

    TinyTransformer(5, d_model=8, n_layers=2, n_heads=2, linear_factory=factory)
    assert roles.count("qkv") == 2 and roles.count("ff_out") == 2 and roles[-1] == "head"


def test_matmul_factory_gives_the_same_attention():
    torch.manual_seed(0)
    plain = TinyTransformer(11, 16, 2, 4, max_len=12)
    calls = []

    def matmul(role):
        calls.append(role)
        return lambda a, b: a @ b

    explicit = TinyTransformer(11, 16, 2, 4, max_len=12, matmul_factory=matmul)
    explicit.load_state_dict(plain.state_dict())
    x = torch.randint(0, 11, (3, 12))
    mask = torch.rand(3, 12) > 0.3
    mask[:, 0] = True
    assert calls == ["attn_scores", "attn_values"] * 2
    assert torch.allclose(plain(x), explicit(x), atol=1e-5)
    assert torch.allclose(plain(x, mask), explicit(x, mask), atol=1e-5)
    bidirectional = TinyTransformer(11, 16, 1, 4, max_len=12, causal=False)
    both = TinyTransformer(11, 16, 1, 4, max_len=12, causal=False, matmul_factory=matmul)
    both.load_state_dict(bidirectional.state_dict())
    assert torch.allclose(bidirectional(x, mask), both(x, mask), atol=1e-5)
