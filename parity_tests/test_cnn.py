"""Properties that span layers: random small CNNs, built from layer specs that type-check
(engine_core.specs.output_shape), agree with torch autograd (the oracle's Sequential of torch.nn
modules) on the logits, the loss, every delta and gradient and dL/dx, after one SGD step and one
Adam/AdamW step, and along a 3-step SGD trajectory, in float64 and float32.

A stack is a Conv2d, more image layers, Flatten, vector layers and a last Linear to the classes;
IMAGE_LAYERS and VECTOR_LAYERS say which kinds may appear and how each draws its arguments for the
shape in front of it, so adding a kind to the random stacks is one line there. An engine without
one of those layers is reported as skipped, naming it.

float32 (RTOL): a CNN's sums are longer than an MLP's (compare.py argues 2e-4 for dot products of
<= 32 terms): a conv weight gradient sums B H_out W_out <= 4 * 11 * 11 = 484 products (kernel 1,
padding 1 on a 9x9 input), a conv output C_in kh kw <= 4 * 9 = 36, a Linear up to 4 * 121 inputs.
The engines and torch's kernels sum in different orders, so their roundings are independent: a sum
of n terms errs by about sqrt(n) u of the sum of |terms| (u = 6e-8; 1.3e-6 at n = 484), by at most
n u = 3e-5; over <= 9 layers forward and back that is ~1e-5 in practice. compare.py's 2e-4 keeps a
20x margin over that and is still 1e3 below what a real bug (a missing term, a wrong stride) does,
O(1) of the scale. Measured over 300 CNNs per engine: 4.5e-7 for a pass, 2.8e-6 after 3 SGD steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine_core.specs import LayerSpec, build, output_shape

from .compare import Mismatch, check_close, compare_trajectories, gradient_scale, max_abs, run_pass, train_steps
from .engines import Engine, oracle
from .strategies import DTYPES, Batch, adam_specs, sgd_specs

ORACLE = oracle()
RTOL = {"float64": 1e-10, "float32": 2e-4}  # as compare.py; argued above
# Per property and engine: a CNN pass costs ~10 ms in each engine and the oracle, so 40 under the ci
# profile (45 examples), a quarter of the profile's count beyond that (thorough: 250).
MAX_EXAMPLES = max(40, settings().max_examples // 4)

Shape = tuple[int, ...]
LayerDraw = Callable[[st.DrawFn, Shape], "LayerSpec | None"]


# -- what a stack may hold: kind -> a layer for the shape in front of it (None: not here) ------------
def _conv(draw: st.DrawFn, shape: Shape) -> LayerSpec:
    _, channels, height, width = shape
    padding = draw(st.integers(0, 1))
    kernel = draw(st.integers(1, min(3, height + 2 * padding, width + 2 * padding)))
    return LayerSpec("conv2d", {"in_channels": channels, "out_channels": draw(st.integers(1, 4)),
                                "kernel_size": kernel, "stride": draw(st.integers(1, 2)), "padding": padding,
                                "bias": draw(st.booleans())})


def _pool(kind: str) -> LayerDraw:
    def layer(draw: st.DrawFn, shape: Shape) -> LayerSpec | None:
        size = min(shape[2:])
        if size < 2:
            return None  # a 1-pixel image: nothing left to pool
        return LayerSpec(kind, {"kernel_size": draw(st.integers(2, min(3, size))),
                                "stride": draw(st.sampled_from([None, 1, 2]))})

    return layer


def _plain(kind: str) -> LayerDraw:
    """A layer without arguments that keeps the shape (an activation)."""
    return lambda draw, shape: LayerSpec(kind)


def _linear(draw: st.DrawFn, shape: Shape) -> LayerSpec:
    return LayerSpec("linear", {"in_features": shape[1], "out_features": draw(st.integers(1, 8)),
                                "bias": draw(st.booleans())})


IMAGE_LAYERS: dict[str, LayerDraw] = {
    "conv2d": _conv,
    "maxpool2d": _pool("maxpool2d"),
    "avgpool2d": _pool("avgpool2d"),
    "relu": _plain("relu"),
    "tanh": _plain("tanh"),
}
VECTOR_LAYERS: dict[str, LayerDraw] = {
    "linear": _linear,
    "relu": _plain("relu"),
    "tanh": _plain("tanh"),
}
STRUCTURE = ("conv2d", "flatten", "linear")  # every stack has these


@dataclass(frozen=True)
class CnnSpec:
    """A stack of layer specs for (B, C, H, W) inputs; builds in any engine from one seed."""

    layers: tuple[LayerSpec, ...]
    input_shape: Shape
    seed: int
    dtype: str
    shapes: tuple[Shape, ...] = field(repr=False, compare=False, default=())

    def build(self, engine: Engine):
        return build(engine.module, self.layers, self.dtype, seed=self.seed)

    def __repr__(self) -> str:
        layers = ",\n    ".join(f"{spec!r}  # -> {shape}" for spec, shape in zip(self.layers, self.shapes))
        return (f"CnnSpec(input_shape={self.input_shape}, seed={self.seed}, dtype={self.dtype!r}, layers=[\n"
                f"    {layers}])")


def _grow(draw: st.DrawFn, kinds: dict[str, LayerDraw], shape: Shape, count: int,
          specs: list[LayerSpec]) -> Shape:
    """Append ``count`` layers drawn from ``kinds`` (a kind that cannot follow is passed over)."""
    for _ in range(count):
        spec = kinds[draw(st.sampled_from(sorted(kinds)))](draw, shape)
        if spec is not None:
            shape = output_shape(spec, shape)  # ValueError if a drawer broke the types
            specs.append(spec)
    return shape


@st.composite
def cnn_problems(draw: st.DrawFn, dtype: str | None = None, steps: int = 1) -> tuple[CnnSpec, list[Batch]]:
    """A random CNN and ``steps`` batches of (B, C, H, W) inputs in [-2, 2] with labels."""
    shape: Shape = (draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(2, 9)),
                    draw(st.integers(2, 9)))
    specs: list[LayerSpec] = []
    features = _grow(draw, {"conv2d": IMAGE_LAYERS["conv2d"]}, shape, 1, specs)
    features = _grow(draw, IMAGE_LAYERS, features, draw(st.integers(0, 3)), specs)
    specs.append(LayerSpec("flatten"))
    features = _grow(draw, VECTOR_LAYERS, output_shape(specs[-1], features), draw(st.integers(0, 3)), specs)
    classes = draw(st.integers(2, 5))
    specs.append(LayerSpec("linear", {"in_features": features[1], "out_features": classes}))
    shapes: list[Shape] = []
    current = shape
    for spec in specs:
        current = output_shape(spec, current)
        shapes.append(current)
    cnn = CnnSpec(layers=tuple(specs), input_shape=shape, seed=draw(st.integers(0, 2**32 - 1)),
                  dtype=dtype or draw(st.sampled_from(DTYPES)), shapes=tuple(shapes))
    elements = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False)
    batches = [Batch(x=draw(arrays(np.float64, shape, elements=elements)),
                     y=draw(arrays(np.int64, (shape[0],), elements=st.integers(0, classes - 1))))
               for _ in range(steps)]
    return cnn, batches


def _require(engine: Engine) -> None:
    """Skip, naming them, when the engine lacks a layer the random stacks use (or Sequential)."""
    engine.require_layers(*sorted({*IMAGE_LAYERS, *VECTOR_LAYERS, *STRUCTURE}),
                          why="layers the random CNNs are built from")


# -- comparisons --------------------------------------------------------------------------------------
def _forward_scale(spec: CnnSpec, x: np.ndarray) -> float:
    """The size of the numbers the logits come from: x and every layer's output in the oracle."""
    import torch

    net = spec.build(ORACLE)
    h = ORACLE.asarray(x, spec.dtype)
    outputs = [x]
    with torch.no_grad():
        for layer in net.layers:
            h = layer.module(h)
            outputs.append(ORACLE.to_numpy(h))
    return max(max_abs(outputs), np.finfo(np.float64).tiny)


def _compare(got, ref, spec: CnnSpec, batch: Batch, name: str) -> None:
    """Logits, loss, dL/dlogits, every delta (Conv2d's and Linear's dL/d(output)), every gradient
    and dL/dx, within RTOL of the forward scale and of the gradient scale."""
    rtol = RTOL[spec.dtype]
    fs, gs = _forward_scale(spec, batch.x), gradient_scale(ref)
    check_close(f"{name}: logits", got.logits, ref.logits, fs, spec.dtype, rtol=rtol)
    check_close(f"{name}: loss", got.loss, ref.loss, max(fs, abs(ref.loss)), spec.dtype, rtol=rtol)
    check_close(f"{name}: dL/dlogits", got.dlogits, ref.dlogits, gs, spec.dtype, rtol=rtol)
    recorders = [f"layers[{i}] {s!r}" for i, s in enumerate(spec.layers) if s.kind in ("conv2d", "linear")]
    if len(got.deltas) != len(ref.deltas):
        raise Mismatch(f"{name}: {len(got.deltas)} deltas, expected {len(ref.deltas)} (one per Conv2d and Linear)")
    for i, (a, b) in enumerate(zip(got.deltas, ref.deltas)):
        check_close(f"{name}: deltas[{i}] (dL/d(output) of {recorders[i]})", a, b, gs, spec.dtype, rtol=rtol)
    if sorted(got.grads) != sorted(ref.grads):
        raise Mismatch(f"{name}: gradient keys {sorted(got.grads)}, expected {sorted(ref.grads)}")
    for key in ref.grads:
        check_close(f"{name}: grads[{key!r}]", got.grads[key], ref.grads[key], gs, spec.dtype, rtol=rtol)
    check_close(f"{name}: dL/dx", got.dx, ref.dx, max(gs, max_abs([ref.dx])), spec.dtype, rtol=rtol)


# -- the properties -----------------------------------------------------------------------------------
@settings(max_examples=MAX_EXAMPLES)
@given(cnn_problems())
def test_random_cnns_agree_with_autograd_on_logits_loss_deltas_and_gradients(engine, problem):
    """One forward and backward: everything the pass produces, both dtypes."""
    _require(engine)
    spec, (batch,) = problem
    note(f"engine={engine.name} spec={spec!r} batch={batch!r}")
    ref = run_pass(ORACLE, spec.build(ORACLE), spec, batch)
    got = run_pass(engine, spec.build(engine), spec, batch)
    _compare(got, ref, spec, batch, engine.name)


@settings(max_examples=MAX_EXAMPLES)
@given(cnn_problems(steps=3), sgd_specs(), st.integers(1, 3))
def test_random_cnns_follow_torch_optim_sgd_for_one_and_three_steps(engine, problem, sgd, steps):
    """SGD (every torch.optim.SGD option) after backprop: parameters and momentum buffers after
    each step agree with torch.optim's (test_optimizers' comparison: the first step out of
    tolerance is reported); one step, or a trajectory of up to 3.

    float32: a step moves a parameter by lr g, and g agrees within RTOL of the gradient scale gs
    (the pass property), so after one step the parameters agree within RTOL of max(|param|, lr gs),
    the scale compare_trajectories applies; later steps add their own gradients' rounding."""
    _require(engine)
    spec, batches = problem
    batches = batches[:steps]
    note(f"engine={engine.name} spec={spec!r} sgd={sgd} batches={batches!r}")
    ref = train_steps(ORACLE, spec, sgd, batches)
    got = train_steps(engine, spec, sgd, batches)
    compare_trajectories(got, ref, spec, sgd.lr, engine.name)


def _adam_bound(lr: float, eps: float, g: np.ndarray, noise: float) -> np.ndarray:
    """How far one engine's first Adam step may stray from torch's when the two gradients differ
    by up to ``noise``: the first step moves a parameter by lr f(g), f(g) = g / (|g| + eps) (the
    bias-corrected moments are g and g^2), and f' = eps / (|g| + eps)^2 <= 1 / eps. Where |g| is
    within the noise of 0 the steps may even point opposite ways (|f| < 1: at most 2 lr apart)."""
    nearest = np.maximum(np.abs(g) - noise, 0.0)
    return lr * np.minimum(2.0, noise * eps / (nearest + eps) ** 2)


@settings(max_examples=MAX_EXAMPLES)
@given(cnn_problems(), adam_specs())
def test_one_adam_step_on_a_random_cnn_follows_torch_optim(engine, problem, adam):
    """Adam/AdamW (moments, bias correction, eps, weight decay, amsgrad), one step, both dtypes.

    Adam divides a gradient by its own size, so the step's error is the gradient's error times
    f'(g) = eps / (|g| + eps)^2 (see _adam_bound), large only where g is near 0: the parameters
    must agree within RTOL of max(|param|, lr) plus that bound, per element, with the gradients'
    difference bounded by what the pass property allows (RTOL of the gradient scale). The moments
    are linear (and quadratic) in g: RTOL of gs (and of gs^2)."""
    _require(engine)
    engine.require(adam.kind)
    spec, batches = problem
    note(f"engine={engine.name} spec={spec!r} adam={adam} batches={batches!r}")
    ref = train_steps(ORACLE, spec, adam, batches)
    got = train_steps(engine, spec, adam, batches)
    start = spec.build(ORACLE).state_dict()
    rtol, gs = RTOL[spec.dtype], gradient_scale(ref[0]["pass"])
    for key, want in ref[0]["params"].items():
        g = ref[0]["pass"].grads[key]
        if adam.kind == "Adam":  # coupled weight decay: the step sees g + wd * param
            g = g + adam.weight_decay * start[key]
        scale = max(max_abs([want, start[key]]), adam.lr)
        check_close(f"{engine.name}: {adam.kind} step: parameter {key!r}", got[0]["params"][key], want, scale,
                    spec.dtype, "(+ Adam's amplification of the gradient's rounding, _adam_bound)",
                    atol=_adam_bound(adam.lr, adam.eps, g, rtol * gs), rtol=rtol)
    for buffer, per in ref[0]["buffers"].items():
        for key, want in per.items():
            scale = max(max_abs([want]), gs * gs if buffer in ("exp_avg_sq", "max_exp_avg_sq") else gs,
                        np.finfo(float).tiny)
            check_close(f"{engine.name}: {adam.kind} step: {buffer}[{key!r}]", got[0]["buffers"][buffer][key], want,
                        scale, spec.dtype, rtol=rtol)
