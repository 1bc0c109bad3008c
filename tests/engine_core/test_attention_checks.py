"""MultiheadAttention's masks as engine_core/attention_checks.py states them: refused in the same words
by numpy_net, torch_net and the oracle, judged in the layer's dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numpy_net
import torch_net
from engine_core.specs import LayerSpec, build
from tests.layer_stacks import attention_layer
from torch_net import autograd


@pytest.mark.parametrize("module", [numpy_net, torch_net, autograd], ids=["numpy_net", "torch_net", "autograd"])
def test_a_query_with_every_key_masked_is_refused_naming_it(module):
    """torch gives NaN for such a row (a softmax over nothing); every engine refuses it."""
    padding = np.array([[True, True, True], [False, True, False]])
    x = np.zeros((2, 3, 6))
    if module is autograd:
        layer = autograd.MultiheadAttention(6, 2, batch_first=True, dtype="float64").module
        call = lambda: layer(torch.from_numpy(x), key_padding_mask=torch.from_numpy(padding))  # noqa: E731
    else:
        layer = attention_layer(module, True)
        mask = torch.from_numpy(padding) if module is torch_net else padding
        call = lambda: layer.forward(module.asarray(x, "float64"), key_padding_mask=mask)  # noqa: E731
    with pytest.raises(ValueError, match=r"every key of query 0 \(batch 0, head 0\) is masked"):
        call()
    if module is not autograd:
        with pytest.raises(ValueError, match=r"attn_mask: expected shape \(3, 3\) or \(4, 3, 3\)"):
            layer.forward(module.asarray(x, "float64"), attn_mask=np.zeros((2, 2)) if module is numpy_net
                          else torch.zeros(2, 2))


@pytest.mark.parametrize("engine", ["numpy_net", "torch_net", "torch_net.autograd"])
def test_a_float_mask_is_judged_in_the_layers_dtype(engine):
    """-1e39 is finite in float64 but -inf in float32: a key padding row of it masks every key of a
    float32 layer, which is refused as a fully masked row (not NaN); +inf in a mask is refused in
    every dtype (its softmax would be NaN, as torch gives)."""
    import importlib

    module = importlib.import_module(engine)
    padding = np.array([[0.0, 0.0, 0.0], [-1e39, -1e39, -1e39]])
    for dtype in ("float32", "float64"):
        layer = build(module, [LayerSpec("multiheadattention", {"embed_dim": 4, "num_heads": 2,
                                                                 "batch_first": True})], dtype).layers[0]
        x = np.random.default_rng(0).standard_normal((2, 3, 4))
        forward = layer.module if engine.endswith("autograd") else layer.forward
        as_array = (lambda a, d: torch.from_numpy(a.astype(d))) if engine.endswith("autograd") else module.asarray
        mask = as_array(padding, "float64")
        if dtype == "float32":
            with pytest.raises(ValueError, match=r"every key of query 0 \(batch 1, head 0\) is masked"):
                forward(as_array(x, dtype), key_padding_mask=mask)
        else:
            forward(as_array(x, dtype), key_padding_mask=mask)  # -1e39 is a finite score in float64
        with pytest.raises(ValueError, match=r"a mask adds \+inf to a score"):
            forward(as_array(x, dtype), attn_mask=as_array(np.full((3, 3), np.inf), "float64"))
