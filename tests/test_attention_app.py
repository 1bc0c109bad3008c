"""The application side of LayerNorm and MultiheadAttention: a network starting with self-attention
reads an image as 28 rows of 28 pixels, trains and evaluates to the same accuracy in every engine,
goes to torch (printed code with the small wrapper nn.MultiheadAttention needs) and back, and its
masks are torch's in every engine, a query with every key masked refused in the same words. The
layers' math is the parity harness's (parity_tests/test_layers.py, the catalog)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numpy_net
import torch_net
from backprop.architecture import LayersSyntaxError, input_shape, parse_layers
from engine_core.specs import LayerSpec, build, state_shapes
from torch_net import autograd

from .helpers import (
    accuracy_of,
    assert_imports_back,
    assert_torch_predicts_as_the_engine,
    cli_out,
    train_and_export,
)

TINY = ("multiheadattention(28, 4, batch_first=True), layernorm(28), laststep(batch_first=True), "
        "layernorm(28, elementwise_affine=False), linear(28, 10)")




def test_an_attention_network_reads_rows_and_needs_batch_first():
    assert input_shape(parse_layers(TINY)) == (28, 28)
    with pytest.raises(LayersSyntaxError, match=r"layer 0 multiheadattention\(28, 4\): the trainer feeds each "
                                                r"image as \(batch, 28 rows, 28 pixels\); give it batch_first=True"):
        parse_layers("multiheadattention(28, 4), laststep, linear(28, 10)")
    with pytest.raises(LayersSyntaxError, match=r"num_heads: must divide embed_dim, got embed_dim=28, num_heads=3"):
        parse_layers("multiheadattention(28, 3, batch_first=True), laststep(batch_first=True), linear(28, 10)")


def test_an_embedding_is_refused_in_a_network_fed_pixels():
    with pytest.raises(LayersSyntaxError, match=r"layer 0 embedding\(10, 4\): an embedding looks up integer "
                                                r"indices \(tokens\), and the trainer feeds pixel values"):
        parse_layers("embedding(10, 4), flatten, linear(3136, 10)")


def test_train_evaluate_export_and_import_an_attention_network(data_root, tmp_path, capsys):
    checkpoint, model, code = train_and_export(capsys, TINY, data_root, tmp_path)
    out = str(tmp_path / "run")
    accuracies = {engine: accuracy_of(cli_out(capsys, "evaluate", out, "--engine", engine, "--out", str(tmp_path)))
                  for engine in ("numpy", "torch", "autograd")}
    assert len(set(accuracies.values())) == 1, accuracies
    # torch's nn.MultiheadAttention takes (query, key, value) and returns a pair: the printed code
    # defines the self-attention wrapper it needs
    assert "class MultiheadAttention(nn.MultiheadAttention):" in code
    assert "nn.Sequential(MultiheadAttention(28, 4, batch_first=True), nn.LayerNorm(28), " in code
    namespace: dict = {}
    exec(code, namespace)
    module = namespace["model"].eval()
    saved = torch.load(model, weights_only=True)
    assert list(saved) == ["0.in_proj_weight", "0.in_proj_bias", "0.out_proj.weight", "0.out_proj.bias",
                           "1.weight", "1.bias", "4.weight", "4.bias"]
    # out_proj is a Linear: (in, out) here, torch's (out, in) in the file
    np.testing.assert_array_equal(saved["0.out_proj.weight"].numpy(), checkpoint.params["0.out_proj.weight"].T)
    np.testing.assert_array_equal(saved["0.in_proj_weight"].numpy(), checkpoint.params["0.in_proj_weight"])
    assert_torch_predicts_as_the_engine(module, checkpoint)
    assert_imports_back(capsys, model, TINY, data_root, tmp_path, checkpoint)


def test_initial_state_is_torchs_rule_zero_biases_and_xavier_in_projection():
    spec = LayerSpec("multiheadattention", {"embed_dim": 8, "num_heads": 2})
    net = build(numpy_net, [spec], "float64", seed=3)
    state = net.state_dict()
    assert list(state) == list(state_shapes([spec])) == ["0.in_proj_weight", "0.in_proj_bias", "0.out_proj.weight",
                                                         "0.out_proj.bias"]
    assert not state["0.in_proj_bias"].any() and not state["0.out_proj.bias"].any()
    bound = np.sqrt(6 / (8 + 24))  # xavier_uniform on (3E, E)
    assert np.abs(state["0.in_proj_weight"]).max() <= bound
    assert np.abs(state["0.out_proj.weight"]).max() <= 1 / np.sqrt(8)  # a Linear's U(+-1/sqrt(fan_in))
    # weights.png draws the first layer's Q, K and V blocks
    from backprop import pictures

    images, titles, key = pictures.weight_images(state)
    assert key == "0.in_proj_weight" and titles == ["Q", "K", "V"] and images.shape == (3, 8, 8)
    np.testing.assert_array_equal(images[1], state["0.in_proj_weight"][8:16])


# -- masks ----------------------------------------------------------------------------------------
ENGINES = [numpy_net, torch_net]


def _layer(module, batch_first: bool, seed: int = 0):
    layer = module.MultiheadAttention(6, 2, batch_first=batch_first, dtype="float64")
    rng = np.random.default_rng(seed)
    for value in layer.parameters().values():
        drawn = rng.uniform(-1, 1, tuple(value.shape))
        if isinstance(value, np.ndarray):
            value[...] = drawn
        else:
            value.copy_(torch.from_numpy(drawn))
    return layer


def _torch_reference(layer, x: np.ndarray, delta: np.ndarray, **masks):
    """torch.nn.MultiheadAttention itself with the layer's parameters, masks given as torch's."""
    mha = torch.nn.MultiheadAttention(6, 2, batch_first=layer.batch_first, dtype=torch.float64)
    params = {k: np.asarray(torch_net.to_numpy(v) if isinstance(v, torch.Tensor) else v)
              for k, v in layer.parameters().items()}
    mha.load_state_dict({k: torch.from_numpy(v.T.copy() if k == "out_proj.weight" else v) for k, v in params.items()})
    t = torch.tensor(x, requires_grad=True)
    y = mha(t, t, t, need_weights=False, **{k: torch.from_numpy(v) for k, v in masks.items()})[0]
    y.backward(torch.from_numpy(delta))
    grads = {k: (p.grad.T if k == "out_proj.weight" else p.grad).numpy() for k, p in mha.named_parameters()}
    return y.detach().numpy(), t.grad.numpy(), grads


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask and attn_mask")  # torch's, bool + float
@pytest.mark.parametrize("module", ENGINES, ids=["numpy_net", "torch_net"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masks", ["key_padding_bool", "attn_bool", "attn_float", "both", "per_head", "causal"])
def test_masks_give_torchs_outputs_and_gradients(module, batch_first, masks):
    batch, steps = 2, 4
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, steps, 6) if batch_first else (steps, batch, 6))
    delta = rng.standard_normal(x.shape)
    padding = np.array([[False, False, True, False], [False, True, True, True]])
    causal = np.triu(np.ones((steps, steps), bool), 1)
    given = {"key_padding_bool": {"key_padding_mask": padding}, "attn_bool": {"attn_mask": causal},
             "attn_float": {"attn_mask": rng.standard_normal((steps, steps))},
             "both": {"key_padding_mask": padding, "attn_mask": rng.standard_normal((steps, steps))},
             "per_head": {"attn_mask": rng.standard_normal((batch * 2, steps, steps))},
             "causal": {"attn_mask": causal}}[masks]
    layer = _layer(module, batch_first)
    want_y, want_dx, want_grads = _torch_reference(layer, x, delta, **given)
    kept = {k: v.copy() for k, v in given.items()}
    mine = {k: (torch.from_numpy(v) if module is torch_net else v) for k, v in given.items()}
    if masks == "causal":  # is_causal=True alone is the causal mask
        mine = {"is_causal": True}
    y = layer.forward(module.asarray(x, "float64"), **mine)
    dx = layer.backward(module.asarray(delta, "float64"))
    np.testing.assert_allclose(module.to_numpy(y), want_y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(module.to_numpy(dx), want_dx, rtol=1e-10, atol=1e-12)
    for key, value in layer.gradients().items():
        np.testing.assert_allclose(module.to_numpy(value), want_grads[key], rtol=1e-10, atol=1e-12, err_msg=key)
    for key, value in kept.items():  # the caller's masks are never written to
        np.testing.assert_array_equal(given[key], value)


@pytest.mark.parametrize("module", [numpy_net, torch_net, autograd], ids=["numpy_net", "torch_net", "autograd"])
def test_a_query_with_every_key_masked_is_refused_naming_it(module):
    """torch gives NaN for such a row (a softmax over nothing); every engine refuses it."""
    padding = np.array([[True, True, True], [False, True, False]])
    x = np.zeros((2, 3, 6))
    if module is autograd:
        layer = autograd.MultiheadAttention(6, 2, batch_first=True, dtype="float64").module
        call = lambda: layer(torch.from_numpy(x), key_padding_mask=torch.from_numpy(padding))  # noqa: E731
    else:
        layer = _layer(module, True)
        mask = torch.from_numpy(padding) if module is torch_net else padding
        call = lambda: layer.forward(module.asarray(x, "float64"), key_padding_mask=mask)  # noqa: E731
    with pytest.raises(ValueError, match=r"every key of query 0 \(batch 0, head 0\) is masked"):
        call()
    if module is not autograd:
        with pytest.raises(ValueError, match=r"attn_mask: expected shape \(3, 3\) or \(4, 3, 3\)"):
            layer.forward(module.asarray(x, "float64"), attn_mask=np.zeros((2, 2)) if module is numpy_net
                          else torch.zeros(2, 2))
