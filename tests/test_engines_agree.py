"""numpy_net vs torch_net directly (the harness checks each against autograd; this checks the
two hand-written engines against each other too)."""

from __future__ import annotations

from hypothesis import given

import numpy_net
import torch_net
from parity_tests.compare import compare_passes, run_pass
from parity_tests.engines import Engine, oracle
from parity_tests.strategies import problems

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
