"""The networks `backprop bench` times (backprop/workloads.py)."""

from __future__ import annotations

from backprop.architecture import parse_layers
from backprop.benchmark import WORKLOADS, workload_gemms, workload_network
from backprop.gemms import network_gemms, training_gemms
from engine_core.specs import LayerSpec, mlp, mlp_of


def test_workloads_include_wide_and_lenet_and_mlps_spell_out_as_stacks():
    assert WORKLOADS["wide"]["network"] == mlp([784, 1024, 1024, 10], "relu")
    assert mlp_of(workload_network("wide")) == ([784, 1024, 1024, 10], "relu")
    network = workload_network("wide")
    assert [s.kind for s in network.children] == ["linear", "relu", "linear", "relu", "linear"]
    assert network == parse_layers("linear(784, 1024), relu, linear(1024, 1024), relu, linear(1024, 10)")
    # The same layers given as a plain list of specs (a stack) have the MLP's products, named by path.
    stack = [LayerSpec("linear", {"in_features": 784, "out_features": 1024}), LayerSpec("relu"),
             LayerSpec("linear", {"in_features": 1024, "out_features": 1024}), LayerSpec("relu"),
             LayerSpec("linear", {"in_features": 1024, "out_features": 10})]
    gemms = network_gemms(stack, 8)
    assert gemms == training_gemms([784, 1024, 1024, 10], 8) == workload_gemms("wide", 8)
    assert [g.what for g in gemms if g.role == "forward"] == ["0.linear forward x@W", "2.linear forward x@W",
                                                              "4.linear forward x@W"]
