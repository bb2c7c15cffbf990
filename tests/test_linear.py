import pytest
import torch
import torch.nn.functional as F
from torch import nn

from asrforge.nn import linear as L


def test_linear_matches_f_linear_without_gradients():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 70, 160), torch.randn(240, 160), torch.randn(240)   # above the oneDNN threshold
    with torch.inference_mode():
        for bias in (b, None):
            assert torch.allclose(L.linear(x, w, bias), F.linear(x, w, bias), atol=1e-5)
        assert torch.allclose(L.linear(x, w, b, gelu=True), F.gelu(F.linear(x, w, b)), atol=1e-5)
    assert L.linear(x, w, b).shape == (2, 70, 240)


def test_onednn_path_is_taken_when_available(monkeypatch):
    if not L.onednn_linear_available():
        pytest.skip("this torch build has no oneDNN linear")
    calls = []
    real = torch.ops.mkldnn._linear_pointwise

    class Spy:
        def __getattr__(self, name):
            return getattr(torch.ops.mkldnn, name)

        def _linear_pointwise(self, *args):
            calls.append(args[3])
            return real(*args)

    monkeypatch.setattr(L.torch.ops, "mkldnn", Spy(), raising=False)
    with torch.no_grad():
        L.linear(torch.randn(64, 128), torch.randn(256, 128), gelu=True)     # 2M multiply-adds
        L.linear(torch.randn(3, 4), torch.randn(5, 4))                       # too small to pay oneDNN's call cost
    assert calls == ["gelu"]


def test_gradients_are_exact_when_training():
    """oneDNN's operator has no backward: a gradient through it would silently be missing."""
    torch.manual_seed(0)
    layer = L.Linear(8, 6)
    ref = nn.Linear(8, 6)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(4, 8, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    layer(x).pow(2).sum().backward()
    ref(x_ref).pow(2).sum().backward()
    assert layer.weight.grad is not None and torch.allclose(layer.weight.grad, ref.weight.grad, atol=1e-6)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-6)


def test_can_be_turned_off_by_environment(monkeypatch):
    L.onednn_linear_available.cache_clear()
    monkeypatch.setenv("ASRFORGE_ONEDNN_LINEAR", "0")
    try:
        assert not L.onednn_linear_available()
        with torch.no_grad():
            x, w = torch.randn(3, 4), torch.randn(5, 4)
            assert torch.equal(L.linear(x, w), F.linear(x, w))
    finally:
        L.onednn_linear_available.cache_clear()


def test_state_dict_keys_are_those_of_plain_layers():
    mlp = L.GeluMLP(4, 16)
    assert list(mlp.state_dict()) == list(nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 4)).state_dict())
    assert list(L.Linear(3, 2, bias=False).state_dict()) == ["weight"]


def test_int8_layers_stay_close_and_a_quantized_mlp_runs_the_plain_sequence():
    from asrforge.nn.int8 import DynamicInt8Linear, RowwiseInt8Linear, replace_linears

    torch.manual_seed(0)
    x = torch.randn(1600, 32)
    x[7] *= 50                                  # one loud row: per-row input scales keep the others fine
    for make in (RowwiseInt8Linear, DynamicInt8Linear.from_linear):
        mlp = L.GeluMLP(32, 64)
        with torch.no_grad():
            ref = mlp(x)
            replace_linears(mlp, make)
            assert not any(isinstance(m, nn.Linear) and not isinstance(m, DynamicInt8Linear) for m in mlp)
            err = (mlp(x) - ref).abs()
        assert err.max() < 0.05 * ref.abs().max()
        quiet = torch.cat([err[:7], err[8:]])
        if make is RowwiseInt8Linear:
            assert quiet.max() < 0.02 * ref[torch.arange(len(ref)) != 7].abs().max()


def test_mlp_in_row_blocks_gives_what_it_gives_at_once():
    torch.manual_seed(0)
    mlp = L.GeluMLP(16, 64)
    x = torch.randn(3, 250, 16)
    with torch.no_grad():
        whole = mlp[2](mlp[1](mlp[0](x)))       # the plain sequence over every row at once
        mlp.BLOCK_ROWS = 100                    # 750 rows: 8 blocks, the last one short
        blocked = mlp(x)
    assert blocked.shape == whole.shape and torch.allclose(blocked, whole, atol=1e-5)
