"""The oracle (torch_net/autograd.py): torch's own modules and layouts, in-place arguments taken and
computed out of place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import numpy_net
import torch_net
from engine_core.specs import LayerSpec, build
from tests.layer_stacks import INPLACE_STACKS, LENET_LIKE, ORACLE, inplace_problem, run_stack
from torch_net import autograd


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_the_oracles_encoder_layer_is_torchs(norm_first, activation):
    """Without dropout, the oracle's encoder layer (torch's modules, the engines' dropout masks, its
    own forward for the masks' rule) is torch.nn.TransformerEncoderLayer in train mode: same
    output and gradients for the same state, with a causal mask and padding."""
    spec = LayerSpec("transformerencoderlayer", {"d_model": 6, "nhead": 2, "dim_feedforward": 5, "dropout": 0.0,
                                                 "activation": activation, "batch_first": True,
                                                 "norm_first": norm_first})
    ours = build(autograd, [spec], "float64", seed=1).layers[0].module
    theirs = torch.nn.TransformerEncoderLayer(6, 2, 5, 0.0, activation, batch_first=True, norm_first=norm_first,
                                              dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    causal = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    padding = torch.tensor([[False, False, False, True]] * 3)
    results = []
    for module in (ours, theirs):
        t = x.clone().requires_grad_(True)
        y = module(t, src_mask=causal, src_key_padding_mask=padding.to(torch.float64) * -1e9)
        y.sum().backward()
        results.append((y.detach(), t.grad, {k: p.grad for k, p in module.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-12)
    for key, grad in results[1][2].items():
        torch.testing.assert_close(results[0][2][key], grad, rtol=1e-12, atol=1e-12, msg=key)


def test_the_oracles_dropped_attention_is_torchs_formula():
    """The oracle's attention written in torch operations (used where its weights are dropped with
    the engines' masks) is torch's own nn.MultiheadAttention when nothing is dropped."""
    layer = autograd.MultiheadAttention(6, 3, dropout=0.5, batch_first=True, dtype="float64").module
    x = torch.randn(2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mask = torch.randn(6, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    saved, layer.attn_dropout = layer.attn_dropout, None
    try:
        ours = layer.dropped_forward(x, mask)
    finally:
        layer.attn_dropout = saved
    theirs = torch.nn.MultiheadAttention.forward(layer, x, x, x, attn_mask=mask, need_weights=False)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_the_oracles_loss_differentiates_logits_that_did_not_come_from_its_mlp():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=torch.float64)
    loss = autograd.SoftmaxCrossEntropy()
    loss.forward(logits, torch.tensor([2, 0]))
    ours = torch_net.SoftmaxCrossEntropy()
    ours.forward(logits, torch.tensor([2, 0]))
    torch.testing.assert_close(loss.backward(), ours.backward(), rtol=0, atol=1e-16)


def test_the_state_dict_of_a_conv_stack_is_torch_nn_sequentials_bar_the_linear_transpose():
    ours = build(numpy_net, LENET_LIKE, "float64", seed=0).state_dict()
    theirs = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3, stride=2),
                           nn.AvgPool2d(2, 1), nn.Flatten(), nn.Linear(4, 3)).state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        expected = tuple(value.shape)[::-1] if key == "6.weight" else tuple(value.shape)  # Linear: (in, out)
        assert ours[key].shape == expected, key


@pytest.mark.parametrize("name", list(INPLACE_STACKS))
def test_the_oracle_takes_inplace_and_computes_out_of_place(name):
    """torch's own in-place LeakyReLU after a Tanh makes autograd raise "modified by an inplace
    operation"; the oracle computes out of place, as the engines do, and says so in its repr."""
    in_place, out_of_place, x, delta = inplace_problem(name)
    got, want = run_stack(ORACLE, in_place, x, delta), run_stack(ORACLE, out_of_place, x, delta)
    assert got["x kept"] and got["delta kept"]
    assert np.array_equal(got["out"], want["out"]) and np.array_equal(got["dx"], want["dx"])
    assert any("inplace=True" in repr(layer) for layer in build(autograd, in_place).leaves())


def test_torch_itself_refuses_the_issues_case_in_place():
    """Why the oracle cannot pass inplace=True on to torch: autograd refuses the gradient."""
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.LeakyReLU(0.1, inplace=True),
                              torch.nn.Linear(4, 3))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        net(torch.randn(6, 5)).sum().backward()
