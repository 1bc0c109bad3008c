"""torch_net.compiled: the torch engine's hand-written step captured by torch.compile equals the
uncompiled engine along training trajectories, in float64 (the harness's trajectory comparison,
parity_tests.compare.compare_trajectories, at its float64 rtol of 1e-10).

Each example compiles a new graph (seconds on 2 cores, more for a CNN), so these properties draw
fewer examples than the harness's (EXAMPLES: 2 in the ci profile, 50 in thorough); the networks
are the harness's own random MLPs and CNNs, trained 3 steps by SGD (every option) or Adam/AdamW.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

import torch_net
from engine_core.errors import NonFiniteError
from engine_core.specs import LayerSpec
from parity_tests.compare import compare_trajectories, gradient_scale, snapshot, train_steps
from parity_tests.engines import Engine
from parity_tests.strategies import AdamSpec, Batch, NetSpec, SGDSpec, adam_specs, batches, net_specs, sgd_specs
from parity_tests.test_cnn import CnnSpec, cnn_problems
from torch_net.compiled import compile_available, compiled_step

TORCH = Engine(torch_net)


EXAMPLES = max(2, settings.default.max_examples // 20)


@pytest.fixture(autouse=True)
def _compile_works() -> None:
    # Asked when a test of this module runs, not when it is collected: trying torch.compile imports
    # torch._dynamo and compiles a graph (~10 s), which every xdist worker would pay at collection.
    reason = compile_available()
    if reason is not None:
        pytest.skip(f"torch.compile does not work here: {reason}")


def _compiled_history(spec, opt_spec, batch_list, reference):
    """compare_trajectories' history of the compiled step (parameters and optimizer buffers after
    each step); the passes are the reference's, which compare_trajectories reads for its scale."""
    net = spec.build(TORCH)
    opt = opt_spec.build(TORCH, net)
    step = compiled_step(net, opt, torch_net.SoftmaxCrossEntropy())
    history = []
    for batch, ref in zip(batch_list, reference):
        step(TORCH.asarray(batch.x, spec.dtype), TORCH.labels(batch.y))
        history.append({"pass": ref["pass"], **snapshot(net, opt)})
    assert opt.step_count == len(batch_list)
    return history


def _agree(spec, opt_spec, batch_list) -> None:
    ref = train_steps(TORCH, spec, opt_spec, batch_list)
    got = _compiled_history(spec, opt_spec, batch_list, ref)
    lr = opt_spec.lr
    atol = 0.0
    if hasattr(opt_spec, "eps"):  # Adam: test_optimizers' bound for gradients that are rounding noise
        gs = gradient_scale(ref[0]["pass"])
        lr = opt_spec.lr / max(gs, 1e-30)
        atol = opt_spec.lr * min(1.0, 64 * np.finfo(spec.dtype).eps * gs / opt_spec.eps)
    compare_trajectories(got, ref, spec, lr, "torch_net.compiled", param_atol=atol)


@st.composite
def mlp_problems(draw):
    """A random float64 MLP and 3 batches of one size (bench's steps: another size compiles again)."""
    spec = draw(net_specs(max_layers=3, max_width=16, dtype="float64"))
    size = draw(st.integers(1, 16))
    batch = batches(spec.sizes[0], spec.sizes[-1], size=size)
    return spec, [draw(batch) for _ in range(3)]


@pytest.mark.slow(reason="a graph compiled per example (about 15 s on 2 cores); make test: the fixed MLPs of "
                  "test_a_compiled_step_keeps_the_optimizers_state_as_the_uncompiled_engine_does (SGD and AdamW)")
@settings(max_examples=EXAMPLES)
@given(mlp_problems(), st.one_of(sgd_specs(), adam_specs()))
def test_a_compiled_step_follows_the_uncompiled_engine_on_random_mlps(problem, opt_spec):
    spec, batch_list = problem
    note(f"spec={spec} optimizer={opt_spec} batches={batch_list!r}")
    _agree(spec, opt_spec, batch_list)


@pytest.mark.slow(reason="a graph compiled per example (about 15 s on 2 cores); make test: "
                  "test_a_compiled_step_follows_the_uncompiled_engine_on_a_small_cnn")
@settings(max_examples=EXAMPLES)
@given(cnn_problems(dtype="float64", steps=3), sgd_specs())
def test_a_compiled_step_follows_the_uncompiled_engine_on_random_cnns(problem, opt_spec):
    spec, batch_list = problem
    note(f"spec={spec!r} optimizer={opt_spec} batches={batch_list!r}")
    _agree(spec, opt_spec, batch_list)


def test_a_compiled_step_follows_the_uncompiled_engine_on_a_small_cnn():
    """The random CNNs' property on one of them: a padded convolution, a pooling, a Linear, Nesterov SGD."""
    rng = np.random.default_rng(4)
    layers = (LayerSpec("conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1}),
              LayerSpec("relu"), LayerSpec("maxpool2d", {"kernel_size": 2}), LayerSpec("flatten"),
              LayerSpec("linear", {"in_features": 12, "out_features": 3}))
    spec = CnnSpec(layers=layers, input_shape=(3, 2, 4, 4), seed=5, dtype="float64")
    batch_list = [Batch(x=rng.uniform(-2, 2, (3, 2, 4, 4)), y=rng.integers(0, 3, 3)) for _ in range(3)]
    _agree(spec, SGDSpec(lr=0.1, momentum=0.9, dampening=0.0, nesterov=True, weight_decay=1e-3), batch_list)


def test_a_compiled_step_returns_the_loss_and_hits_of_an_uncompiled_one_to_the_bit():
    """The loss leaves the graph as a float64 tensor and is divided on the host, as
    SoftmaxCrossEntropy.forward divides (Inductor's scalar outputs are float32: a loss read
    inside the graph came back rounded)."""
    rng = np.random.default_rng(0)
    spec = NetSpec(sizes=(6, 5, 3), activation="tanh", init="he_normal", seed=1, dtype="float64")
    batch_list = [Batch(x=rng.normal(size=(4, 6)), y=rng.integers(0, 3, 4)) for _ in range(3)]
    eager_net, compiled_net = spec.build(TORCH), spec.build(TORCH)
    eager_opt, compiled_opt = TORCH.SGD(eager_net, lr=0.1), TORCH.SGD(compiled_net, lr=0.1)
    loss_fn = TORCH.SoftmaxCrossEntropy()
    step = compiled_step(compiled_net, compiled_opt, TORCH.SoftmaxCrossEntropy())
    for batch in batch_list:
        x, y = TORCH.asarray(batch.x, "float64"), TORCH.labels(batch.y)
        logits = eager_net.forward(x)
        want = loss_fn.forward(logits, y)
        hits = int((logits.argmax(1) == y).sum())
        eager_net.backward(loss_fn.backward())
        eager_opt.step()
        assert step(x, y) == (want, hits)


def test_a_non_finite_loss_raises_after_the_step():
    net = torch_net.MLP([3, 2], activation="relu", seed=0, dtype="float64")
    step = compiled_step(net, torch_net.SGD(net, lr=0.1), torch_net.SoftmaxCrossEntropy())
    x, y = torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.int64)
    step(x, y)  # eager: the inputs are checked here
    with pytest.raises(NonFiniteError, match="after a compiled step"):
        step(torch.full((2, 3), float("nan"), dtype=torch.float64), y)


@pytest.mark.parametrize("opt_spec", [
    SGDSpec(lr=0.1, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0),
    AdamSpec(kind="AdamW", lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=True),
], ids=["sgd-momentum", "adamw-amsgrad"])
def test_a_compiled_step_keeps_the_optimizers_state_as_the_uncompiled_engine_does(opt_spec):
    """The state an optimizer creates at its first step (momentum buffers, Adam's moments): made
    inside the graph, a momentum buffer came out aliasing the gradient it was cloned from, and the
    parameters were 6% off at the second step (torch_net.compiled runs the first step eagerly)."""
    rng = np.random.default_rng(2)
    spec = NetSpec(sizes=(5, 7, 3), activation="relu", init="he_normal", seed=3, dtype="float64")
    _agree(spec, opt_spec, [Batch(x=rng.normal(size=(4, 5)), y=rng.integers(0, 3, 4)) for _ in range(3)])
