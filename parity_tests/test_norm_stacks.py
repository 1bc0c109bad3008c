"""Properties that span the normalisation layers: random MLP-like stacks of blocks
Linear -> [BatchNorm1d] -> ReLU | LeakyReLU | GELU -> [Dropout], then a last Linear to the classes,
agree with torch autograd (the oracle's Sequential of torch.nn modules, with the same NumPy-drawn
dropout masks) in train mode on the logits, the loss, every Linear's delta, every gradient, dL/dx
and the running statistics, after one SGD step (both dtypes) and one Adam/AdamW step (float64);
in eval mode, after a train-mode batch has moved the running statistics, on the same; and over
several SGD steps, where momentum=None's cumulative average divides by num_batches_tracked > 1.
Batch norms draw torch's arguments: momentum (None too), affine and track_running_stats.

Tolerances are compare.py's (float64 1e-10; float32 2e-4 of the scale). Batch norm multiplies the
rounding of its input by 1/sqrt(var + eps), up to 1/sqrt(eps) on a (near-)constant channel: 316
for torch's eps = 1e-5, beyond what 2e-4 argues for float32 sums, so float32 stacks draw eps in
{1e-3, 0.1} (at most 31.6 x ~4 u = 8e-6 of the scale) and torch's 1e-5 is tested in float64 here
and layer by layer in the catalog, with its own argued float32 rtol.

Kinks: ReLU's derivative at 0 is decided by the sign of whatever rounding leaves there, and the
libraries round differently (torch's batch norm computes x a + (bias - mean a), NumPy's
a (x - mean) + bias). Batch norm makes that common, since a channel constant over the batch
normalises to exactly its bias, 0 by default: the stacks draw biases away from 0 (see
_batchnorm_state), and a batch norm without a bias (affine=False) is followed by GELU, which has
no kink, and then by a Linear with a bias. A pre-activation elsewhere within rounding of 0
remains possible; hypothesis found one in ~24,000 stress examples (float32, eval mode), none in
the ci profile's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine_core.specs import LayerSpec, build

from .compare import Mismatch, Pass, check_close, compare_trajectories, gradient_scale, max_abs, run_pass, train_steps
from .engines import Engine, oracle
from .strategies import DTYPES, Batch, adam_specs, sgd_specs

ORACLE = oracle()
MAX_EXAMPLES = 50  # per property and engine
USED = ("linear", "batchnorm1d", "relu", "leakyrelu", "gelu", "dropout")


@dataclass(frozen=True)
class StackSpec:
    """A stack of layer specs for (B, features) inputs; builds in any engine from one seed, then
    loads ``state`` (every batch norm's weight, bias and running statistics)."""

    layers: tuple[LayerSpec, ...]
    seed: int
    dtype: str
    state: dict[str, np.ndarray] = field(default_factory=dict, compare=False)

    def build(self, engine: Engine):
        net = build(engine.module, self.layers, self.dtype, seed=self.seed)
        net.load_state_dict({**net.state_dict(), **self.state})
        return net

    def __repr__(self) -> str:
        layers = ",\n    ".join(repr(spec) for spec in self.layers)
        with np.printoptions(precision=17):
            state = ", ".join(f"{k!r}: np.array({v.tolist()})" for k, v in self.state.items())
        return f"StackSpec(seed={self.seed}, dtype={self.dtype!r}, state={{{state}}}, layers=[\n    {layers}])"


def _batchnorm_state(draw: st.DrawFn, index: int | str, channels: int, affine: bool = True,
                     track_running_stats: bool = True) -> dict[str, np.ndarray]:
    """weight of either sign, |weight| in [0.5, 2]; bias of either sign, |bias| in [0.1, 1] (affine);
    running statistics away from their start (track_running_stats). The bias is kept off 0: a
    constant channel normalises to exactly bias in exact arithmetic, and to bias plus rounding
    (torch's y = x a + (bias - mean a) leaves ~u |mean a|, NumPy's a (x - mean) + bias none): at
    bias = 0, which the default state has, that lands on ReLU's kink, where rounding alone decides
    the derivative (0 or 1). ``index``: the layer's path (test_trees.py draws nested ones)."""

    def signed(low: float, high: float) -> np.ndarray:
        return draw(arrays(np.float64, (channels,), elements=st.floats(low, high) | st.floats(-high, -low)))

    state = {}
    if affine:
        state.update({f"{index}.weight": signed(0.5, 2.0), f"{index}.bias": signed(0.1, 1.0)})
    if track_running_stats:
        state.update({
            f"{index}.running_mean": draw(arrays(np.float64, (channels,), elements=st.floats(-1.0, 1.0))),
            f"{index}.running_var": draw(arrays(np.float64, (channels,), elements=st.floats(0.5, 2.0)))})
    return state


def _batchnorm(draw: st.DrawFn, channels: int, eps_choices: list[float]) -> LayerSpec:
    """BatchNorm1d with torch's arguments drawn (momentum None: the cumulative average)."""
    return LayerSpec("batchnorm1d", {"num_features": channels, "eps": draw(st.sampled_from(eps_choices)),
                                     "momentum": draw(st.sampled_from([0.1, 0.0, 0.5, 1.0, None])),
                                     "affine": draw(st.sampled_from([True, False])),
                                     "track_running_stats": draw(st.sampled_from([True, False]))})


def _activation(draw: st.DrawFn) -> LayerSpec:
    kind = draw(st.sampled_from(["relu", "leakyrelu", "gelu"]))
    if kind == "leakyrelu":
        return LayerSpec(kind, {"negative_slope": draw(st.sampled_from([0.01, 0.0, -0.5, 0.2, 1.0]))})
    if kind == "gelu":
        return LayerSpec(kind, {"approximate": draw(st.sampled_from(["none", "tanh"]))})
    return LayerSpec(kind)


@st.composite
def stack_problems(draw: st.DrawFn, dtype: str | None = None, steps: int = 1) -> tuple[StackSpec, list[Batch]]:
    """A random stack (the first block always has BatchNorm1d and Dropout) and ``steps`` batches
    of B >= 2 rows (train-mode batch norm needs two) in [-3, 3], with labels."""
    dtype = dtype or draw(st.sampled_from(DTYPES))
    eps_choices = [1e-5, 1e-3, 0.1] if dtype == "float64" else [1e-3, 0.1]
    batch, features = draw(st.integers(2, 6)), draw(st.integers(1, 6))
    width, layers, state, affine = features, [], {}, True
    for block in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 6))
        # After a batch norm without a bias, a constant channel leaves only rounding, which the
        # next Linear's bias keeps off the next activation's kink (see the top).
        bias = True if not affine else draw(st.booleans())
        layers.append(LayerSpec("linear", {"in_features": width, "out_features": out, "bias": bias}))
        affine = True
        if block == 0 or draw(st.booleans()):
            norm = _batchnorm(draw, out, eps_choices)
            affine = norm.args["affine"]
            state.update(_batchnorm_state(draw, len(layers), out, affine, norm.args["track_running_stats"]))
            layers.append(norm)
        # Without a bias to keep a constant channel off 0, a smooth activation (see the top).
        layers.append(_activation(draw) if affine else LayerSpec("gelu", {"approximate": "none"}))
        if block == 0 or draw(st.booleans()):
            layers.append(LayerSpec("dropout", {"p": draw(st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0])),
                                                "seed": draw(st.integers(0, 2**32 - 1))}))
        width = out
    classes = draw(st.integers(2, 5))
    layers.append(LayerSpec("linear", {"in_features": width, "out_features": classes}))
    spec = StackSpec(layers=tuple(layers), seed=draw(st.integers(0, 2**32 - 1)), dtype=dtype, state=state)
    elements = st.floats(-3.0, 3.0, allow_nan=False, allow_subnormal=False)
    batches = [Batch(x=draw(arrays(np.float64, (batch, features), elements=elements)),
                     y=draw(arrays(np.int64, (batch,), elements=st.integers(0, classes - 1))))
               for _ in range(steps)]
    return spec, batches


def _require(engine: Engine, spec: StackSpec | None = None) -> None:
    """Skip, naming them, when the engine lacks a layer the random stacks use (or Sequential);
    leave out a stack that sets an argument the engine's layer class does not take
    (test_layers.py reports each such argument by name)."""
    engine.require_layers(*USED, why="layers the random stacks are built from")
    if spec is not None:
        assume(not any(engine.unsupported(layer) for layer in spec.layers))


def _forward_scale(spec: StackSpec, x: np.ndarray, warm_up: np.ndarray | None) -> float:
    """The size of the numbers the logits come from: x and every layer's output, in a fresh copy
    of the oracle's stack (after the same warm-up batch, in the same mode)."""
    import torch

    net = spec.build(ORACLE)
    if warm_up is not None:
        with torch.no_grad():
            net.forward(ORACLE.asarray(warm_up, spec.dtype))
        net.eval()
    return _outputs_scale(net, x, spec.dtype)


def _outputs_scale(net, x: np.ndarray, dtype: str) -> float:
    """x and every layer's output in the oracle's ``net`` as it is (in eval mode it changes nothing)."""
    import torch

    with torch.no_grad():
        h = ORACLE.asarray(x, dtype)
        outputs = [x]
        for layer in net.layers:
            h = layer.module(h)
            outputs.append(ORACLE.to_numpy(h))
    return max(max_abs(outputs), np.finfo(np.float64).tiny)


def _compare(got: Pass, ref: Pass, got_state: dict, ref_state: dict, spec: StackSpec, scale: float,
             name: str) -> None:
    """Logits, loss, dL/dlogits, each Linear's delta, every gradient, dL/dx and the running
    statistics (the state dict after the pass)."""
    dtype = spec.dtype
    gs = gradient_scale(ref)
    check_close(f"{name}: logits", got.logits, ref.logits, scale, dtype)
    check_close(f"{name}: loss", got.loss, ref.loss, max(scale, abs(ref.loss)), dtype)
    check_close(f"{name}: dL/dlogits", got.dlogits, ref.dlogits, gs, dtype)
    linears = [f"layers[{i}] {s!r}" for i, s in enumerate(spec.layers) if s.kind == "linear"]
    if len(got.deltas) != len(ref.deltas):
        raise Mismatch(f"{name}: {len(got.deltas)} deltas, expected {len(ref.deltas)} (one per Linear)")
    for i, (a, b) in enumerate(zip(got.deltas, ref.deltas)):
        check_close(f"{name}: deltas[{i}] (dL/d(output) of {linears[i]})", a, b, gs, dtype)
    if sorted(got.grads) != sorted(ref.grads):
        raise Mismatch(f"{name}: gradient keys {sorted(got.grads)}, expected {sorted(ref.grads)}")
    for key in ref.grads:
        check_close(f"{name}: grads[{key!r}]", got.grads[key], ref.grads[key], gs, dtype)
    check_close(f"{name}: dL/dx", got.dx, ref.dx, max(gs, max_abs([ref.dx])), dtype)
    if list(got_state) != list(ref_state):
        raise Mismatch(f"{name}: state keys {list(got_state)}, expected {list(ref_state)}")
    for key, want in ref_state.items():
        check_close(f"{name}: state[{key!r}]", got_state[key], want, max(scale, max_abs([want])), dtype)


@settings(max_examples=MAX_EXAMPLES)
@given(stack_problems())
def test_random_norm_stacks_agree_with_autograd_in_train_mode(engine, problem):
    """One train-mode forward and backward: everything the pass produces and the running
    statistics it leaves, both dtypes."""
    spec, (batch,) = problem
    _require(engine, spec)
    note(f"engine={engine.name} spec={spec!r} batch={batch!r}")
    ref_net, got_net = spec.build(ORACLE), spec.build(engine)
    ref = run_pass(ORACLE, ref_net, spec, batch)
    got = run_pass(engine, got_net, spec, batch)
    _compare(got, ref, got_net.state_dict(), ref_net.state_dict(), spec, _forward_scale(spec, batch.x, None),
             f"{engine.name} (train)")


@settings(max_examples=MAX_EXAMPLES)
@given(stack_problems(steps=2))
def test_random_norm_stacks_in_eval_mode_give_torchs_outputs(engine, problem):
    """A train-mode forward on one batch moves the running statistics and draws a mask; then, in
    eval mode (running statistics, no dropout), a pass on another batch, of any size."""
    spec, (warm_up, batch) = problem
    _require(engine, spec)
    note(f"engine={engine.name} spec={spec!r} warm_up={warm_up!r} batch={batch!r}")
    passes, states = [], []
    for subject in (ORACLE, engine):
        net = spec.build(subject)
        net.forward(subject.asarray(warm_up.x, spec.dtype))
        net.eval()
        passes.append(run_pass(subject, net, spec, batch))
        states.append(net.state_dict())
    _compare(passes[1], passes[0], states[1], states[0], spec, _forward_scale(spec, batch.x, warm_up.x),
             f"{engine.name} (eval)")


@settings(max_examples=MAX_EXAMPLES // 2)  # three steps an example
@given(stack_problems(steps=3), sgd_specs())
def test_several_sgd_steps_move_the_running_statistics_and_the_counters_as_torch_does(engine, problem, sgd):
    """Three train-mode steps of torch.optim.SGD, then eval mode, both dtypes: the parameters and
    running statistics after every step (momentum=None: running += (batch - running) /
    num_batches_tracked, at counts 1, 2, 3), every batch norm's num_batches_tracked (where the
    engine's layer keeps one), and the eval-mode logits on the last batch."""
    spec, batches = problem
    _require(engine, spec)
    note(f"engine={engine.name} spec={spec!r} sgd={sgd} batches={batches!r}")
    norms = [index for index, layer in enumerate(spec.layers) if layer.kind == "batchnorm1d"]
    runs = []
    for subject in (ORACLE, engine):
        net = spec.build(subject)
        optimizer = sgd.build(subject, net)
        history = []
        for batch in batches:
            optimizer.zero_grad()
            result = run_pass(subject, net, spec, batch)
            optimizer.step()
            state = {key: np.asarray(value, np.float64) for key, value in net.state_dict().items()}
            history.append({"pass": result, "params": state, "buffers": {}})  # SGD's buffers: the test above
        counts = {index: getattr(net.layers[index], "num_batches_tracked", None) for index in norms}
        net.eval()
        logits = subject.to_numpy(net.forward(subject.asarray(batches[-1].x, spec.dtype))).astype(np.float64)
        runs.append((history, counts, logits, net))
    (ref, ref_counts, ref_logits, ref_net), (got, got_counts, got_logits, _) = runs
    compare_trajectories(got, ref, spec, sgd.lr, engine.name)
    for index, count in ref_counts.items():
        assert count == (len(batches) if spec.layers[index].args["track_running_stats"] else 0)
        if got_counts[index] is not None:
            assert got_counts[index] == count, f"{engine.name}: layers[{index}].num_batches_tracked"
    check_close(f"{engine.name} (eval after {len(batches)} steps): logits", got_logits, ref_logits,
                _outputs_scale(ref_net, batches[-1].x, spec.dtype), spec.dtype)


@settings(max_examples=MAX_EXAMPLES)
@given(stack_problems(), sgd_specs())
def test_one_sgd_step_on_a_random_norm_stack_follows_torch_optim(engine, problem, sgd):
    """Backprop in train mode, then torch.optim.SGD (every option): parameters, running
    statistics and momentum buffers agree (test_optimizers' comparison), both dtypes."""
    spec, batches = problem
    _require(engine, spec)
    note(f"engine={engine.name} spec={spec!r} sgd={sgd} batches={batches!r}")
    compare_trajectories(train_steps(engine, spec, sgd, batches), train_steps(ORACLE, spec, sgd, batches), spec, sgd.lr,
                          engine.name)


@settings(max_examples=MAX_EXAMPLES)
@given(stack_problems(dtype="float64"), adam_specs())
def test_one_adam_step_on_a_random_norm_stack_follows_torch_optim(engine, problem, adam):
    """Backprop in train mode, then torch.optim.Adam/AdamW, float64 (test_optimizers argues why
    end-to-end Adam is checked in float64: Adam turns rounding noise of a zero gradient into a
    step of lr * noise / eps, allowed for here as there).

    Behind a batch norm, zero gradients are the rule, not the exception: a bias right before
    one has dL/db = 0 exactly (normalising removes any shift), and so does every parameter
    feeding a channel that is constant over the batch; what comes out is rounding noise that
    the batch norm's backward multiplied by up to |weight| / sqrt(eps). The noise allowance
    carries that factor."""
    engine.require(adam.kind)
    spec, batches = problem
    _require(engine, spec)
    note(f"engine={engine.name} spec={spec!r} adam={adam} batches={batches!r}")
    ref = train_steps(ORACLE, spec, adam, batches)
    got = train_steps(engine, spec, adam, batches)
    gs = gradient_scale(ref[0]["pass"])
    gain = max([1.0] + [float(np.max(np.abs(spec.state.get(f"{i}.weight", 1.0)))) / np.sqrt(layer.args["eps"])
                        for i, layer in enumerate(spec.layers) if layer.kind == "batchnorm1d"])  # 1: affine=False
    noise = 64 * np.finfo(spec.dtype).eps * gs * gain
    compare_trajectories(got, ref, spec, adam.lr / max(gs, 1e-30), engine.name,
                          param_atol=adam.lr * min(1.0, noise / adam.eps))
