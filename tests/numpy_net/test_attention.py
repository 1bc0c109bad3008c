"""Self-attention (numpy_net/attention.py and its twin torch_net/attention.py, both tested here): every
mask gives torch's outputs and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numpy_net
import torch_net
from tests.layer_stacks import attention_layer

# -- masks ----------------------------------------------------------------------------------------
ENGINES = [numpy_net, torch_net]


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
    layer = attention_layer(module, batch_first)
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
