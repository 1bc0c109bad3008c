"""Batch normalisation and dropout on tensors (torch_net/normalization.py; the twin tests:
tests/numpy_net/test_normalization.py)."""

from __future__ import annotations

import torch

import torch_net


# -- activations --------------------------------------------------------------------------------------
def test_torch_net_layers_take_tensors_that_require_grad_and_record_no_graph():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    for layer in (torch_net.BatchNorm1d(3, dtype="float64"), torch_net.Dropout(0.5), torch_net.LeakyReLU(),
                  torch_net.GELU()):
        out = layer.forward(x)
        assert not out.requires_grad and out.grad_fn is None, layer
