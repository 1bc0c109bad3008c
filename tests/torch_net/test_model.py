"""The torch engine's Sequential and MLP (torch_net/model.py): equal to numpy_net's, tensors that
require grad taken without a graph."""

from __future__ import annotations

import torch
from hypothesis import given

import numpy_net
import torch_net
from parity_tests.compare import compare_passes, run_pass
from parity_tests.engines import Engine, oracle
from parity_tests.strategies import problems


def test_torch_net_takes_tensors_that_require_grad_and_records_no_graph():
    x = torch.ones(5, 3, dtype=torch.float64, requires_grad=True)
    net = torch_net.MLP([3, 2], dtype="float64")
    logits = net.forward(x)
    loss = torch_net.SoftmaxCrossEntropy()
    loss.forward(logits * 1.0, torch.zeros(5, dtype=torch.int64))
    dx = net.backward(loss.backward().requires_grad_(True))
    assert not logits.requires_grad and not dx.requires_grad


ORACLE = oracle()


@given(problems())
def test_numpy_and_torch_engines_agree_with_each_other(problem):
    """numpy_net vs torch_net directly (not only each against autograd)."""
    spec, batch = problem
    numpy_engine, torch_engine = Engine(numpy_net), Engine(torch_net)
    ref_net = spec.build(ORACLE)
    run_pass(ORACLE, ref_net, spec, batch)
    pre = [ORACLE.to_numpy(z) for z in ref_net.pre_activations()]
    a = run_pass(numpy_engine, spec.build(numpy_engine), spec, batch)
    b = run_pass(torch_engine, spec.build(torch_engine), spec, batch)
    compare_passes(a, b, spec, pre, "numpy_net vs torch_net")
