"""Networks are trees: random nested networks (Sequentials inside Sequentials, every layer kind of
the catalog) have, in every engine, exactly the state-dict keys and shapes torch.nn gives the same
module tree (Linear weights transposed), and agree with torch autograd on the logits, the loss,
every delta, every gradient and dL/dx, and after an SGD and an Adam/AdamW step, in float64 at the
harness's 1e-10.

Train mode throughout: batch norm normalises with batch statistics and dropout draws its masks
(the same ones in every engine, from the layer's seed), so every catalog layer's train-mode
backward is on the path. Batch norm layers start from test_norm_stacks' drawn state (biases off
0, where a constant channel would put ReLU's kink within rounding; that module argues it), and the
Adam property allows its noise the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine_core.specs import KINDS, LayerSpec, as_network, build, output_shape, state_shapes

from .compare import check_close, compare_trajectories, gradient_scale, max_abs, run_pass, train_steps
from .engines import Engine, oracle
from .strategies import Batch, adam_specs, sgd_specs
from .test_norm_stacks import _batchnorm_state

ORACLE = oracle()
DTYPE = "float64"
MAX_EXAMPLES = max(30, settings().max_examples // 4)
Shape = tuple[int, ...]
ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh", "leakyrelu", "gelu")


def _image_layer(draw: st.DrawFn, shape: Shape) -> LayerSpec:
    _, channels, height, width = shape
    kinds = ["conv2d", "batchnorm2d", "dropout", *ACTIVATIONS] + (["maxpool2d", "avgpool2d"] if min(height, width) >= 2
                                                                  else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "conv2d":
        padding = draw(st.integers(0, 1))
        return LayerSpec(kind, {"in_channels": channels, "out_channels": draw(st.integers(1, 3)),
                                "kernel_size": draw(st.integers(1, min(3, height + 2 * padding, width + 2 * padding))),
                                "stride": draw(st.integers(1, 2)), "padding": padding, "bias": draw(st.booleans())})
    if kind in ("maxpool2d", "avgpool2d"):
        return LayerSpec(kind, {"kernel_size": draw(st.integers(2, min(3, height, width))),
                                "stride": draw(st.sampled_from([None, 1, 2]))})
    return _common(draw, kind, channels)


def _vector_layer(draw: st.DrawFn, shape: Shape) -> LayerSpec:
    kind = draw(st.sampled_from(["linear", "batchnorm1d", "dropout", *ACTIVATIONS]))
    if kind == "linear":
        return LayerSpec(kind, {"in_features": shape[1], "out_features": draw(st.integers(1, 6)),
                                "bias": draw(st.booleans())})
    return _common(draw, kind, shape[1])


def _common(draw: st.DrawFn, kind: str, features: int) -> LayerSpec:
    if kind in ("batchnorm1d", "batchnorm2d"):
        return LayerSpec(kind, {"num_features": features, "momentum": draw(st.sampled_from([0.1, 0.5]))})
    # inplace=True anywhere in a tree (after a layer that keeps its output, pytorch/pytorch#1029):
    # the numbers must be the out-of-place network's.
    if kind == "dropout":
        return LayerSpec(kind, {"p": draw(st.sampled_from([0.0, 0.25, 0.5])), "inplace": draw(st.booleans()),
                                "seed": draw(st.integers(0, 9))})
    if kind == "leakyrelu":
        return LayerSpec(kind, {"negative_slope": draw(st.sampled_from([0.01, -0.5, 2.0])),
                                "inplace": draw(st.booleans())})
    if kind == "relu":
        return LayerSpec(kind, {"inplace": draw(st.booleans())})
    if kind == "gelu":
        return LayerSpec(kind, {"approximate": draw(st.sampled_from(["none", "tanh"]))})
    return LayerSpec(kind)


def _nest(draw: st.DrawFn, layers: list[LayerSpec], depth: int = 0) -> list[LayerSpec]:
    """The layers, in order, with random runs of them wrapped in Sequentials (nested up to 3 deep)."""
    out: list[LayerSpec] = []
    index = 0
    while index < len(layers):
        size = draw(st.integers(1, len(layers) - index))
        group = layers[index:index + size]
        index += size
        if depth < 3 and draw(st.booleans()):
            out.append(LayerSpec("sequential", {}, tuple(_nest(draw, group, depth + 1))))
        else:
            out.extend(group)
    return out


@dataclass(frozen=True)
class TreeSpec:
    """A random network (its root Sequential) for (B, C, H, W) inputs; builds in any engine."""

    root: LayerSpec
    input_shape: Shape
    seed: int
    state: dict[str, np.ndarray] = field(default_factory=dict, compare=False)  # batch norms' start
    dtype: str = DTYPE
    flat: tuple[LayerSpec, ...] = field(repr=False, compare=False, default=())

    def build(self, engine: Engine):
        net = build(engine.module, self.root, self.dtype, seed=self.seed)
        net.load_state_dict({**net.state_dict(), **self.state})
        return net

    def batchnorm_gain(self) -> float:
        """The largest |weight| / sqrt(eps) of its batch norms (1 without any)."""
        return max([1.0] + [float(np.max(np.abs(self.state[f"{path}.weight"]))) / np.sqrt(layer.args["eps"])
                            for path, layer in self.root.walk() if layer.kind.startswith("batchnorm")])


@st.composite
def tree_problems(draw: st.DrawFn, steps: int = 1) -> tuple[TreeSpec, list[Batch]]:
    shape: Shape = (draw(st.integers(2, 4)), draw(st.integers(1, 3)), draw(st.integers(2, 7)), draw(st.integers(2, 7)))
    flat: list[LayerSpec] = []
    current = shape
    for _ in range(draw(st.integers(1, 4))):
        flat.append(_image_layer(draw, current))
        current = output_shape(flat[-1], current)
    flat.append(LayerSpec("flatten"))
    current = output_shape(flat[-1], current)
    for _ in range(draw(st.integers(0, 4))):
        flat.append(_vector_layer(draw, current))
        current = output_shape(flat[-1], current)
    classes = draw(st.integers(2, 4))
    flat.append(LayerSpec("linear", {"in_features": current[1], "out_features": classes}))
    root = as_network(_nest(draw, flat))
    state: dict[str, np.ndarray] = {}
    for path, layer in root.walk():
        if layer.kind.startswith("batchnorm"):
            state.update(_batchnorm_state(draw, path, layer.args["num_features"]))  # type: ignore[arg-type]
    spec = TreeSpec(root, shape, draw(st.integers(0, 2**32 - 1)), state, flat=tuple(flat))
    elements = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False)
    batches = [Batch(x=draw(arrays(np.float64, shape, elements=elements)),
                     y=draw(arrays(np.int64, (shape[0],), elements=st.integers(0, classes - 1))))
               for _ in range(steps)]
    return spec, batches


def torch_tree(spec: LayerSpec):
    """The torch.nn module tree of a spec, built here from torch.nn's classes alone."""
    from torch import nn

    cls = getattr(nn, spec.class_name)
    if spec.info.container:
        return cls(*(torch_tree(child) for child in spec.children))
    return cls(**spec.info.torch_args(spec.args))


def _require(engine: Engine) -> None:
    engine.require_layers(*sorted(kind for kind in KINDS if kind != "sequential"),
                          why="layers the random trees are built from")


def _forward_scale(spec: TreeSpec, x: np.ndarray) -> float:
    """x and every layer's output in the oracle (its leaves, run in order)."""
    import torch

    net = spec.build(ORACLE)
    h, outputs = ORACLE.asarray(x, DTYPE), [x]
    with torch.no_grad():
        for layer in net.leaves():
            h = layer.module(h)
            outputs.append(ORACLE.to_numpy(h))
    return max(max_abs(outputs), np.finfo(np.float64).tiny)


@settings(max_examples=MAX_EXAMPLES)
@given(tree_problems())
def test_random_trees_have_torchs_keys_and_shapes_in_every_engine(engine, problem):
    _require(engine)
    spec, _ = problem
    note(f"engine={engine.name} tree={spec.root!r}")
    module = torch_tree(spec.root)
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()
                if not key.endswith("num_batches_tracked")}
    linear_weights = {f"{name}.weight" for name, m in module.named_modules() if type(m).__name__ == "Linear"}
    expected = {key: shape[::-1] if key in linear_weights else shape for key, shape in expected.items()}
    assert list(state_shapes(spec.root).items()) == list(expected.items())
    for target in (engine, ORACLE):
        state = spec.build(target).state_dict()
        assert [(key, value.shape) for key, value in state.items()] == list(expected.items()), target.name


@settings(max_examples=MAX_EXAMPLES)
@given(tree_problems())
def test_random_trees_agree_with_autograd_on_logits_loss_deltas_gradients_and_dx(engine, problem):
    _require(engine)
    spec, (batch,) = problem
    note(f"engine={engine.name} tree={spec.root!r} batch={batch!r}")
    ref = run_pass(ORACLE, spec.build(ORACLE), spec, batch)
    got = run_pass(engine, spec.build(engine), spec, batch)
    fs, gs = _forward_scale(spec, batch.x), gradient_scale(ref)
    check_close(f"{engine.name}: logits", got.logits, ref.logits, fs, DTYPE)
    check_close(f"{engine.name}: loss", got.loss, ref.loss, max(fs, abs(ref.loss)), DTYPE)
    assert len(got.deltas) == len(ref.deltas) == sum(s.kind in ("linear", "conv2d") for s in spec.flat)
    for i, (a, b) in enumerate(zip(got.deltas, ref.deltas)):
        check_close(f"{engine.name}: deltas[{i}]", a, b, gs, DTYPE)
    assert list(got.grads) == list(ref.grads)
    for key in ref.grads:
        check_close(f"{engine.name}: grads[{key!r}]", got.grads[key], ref.grads[key], gs, DTYPE)
    check_close(f"{engine.name}: dL/dx", got.dx, ref.dx, max(gs, max_abs([ref.dx])), DTYPE)


@settings(max_examples=MAX_EXAMPLES)
@given(tree_problems(steps=2), sgd_specs())
def test_random_trees_follow_torch_optim_sgd(engine, problem, sgd):
    _require(engine)
    spec, batches = problem
    note(f"engine={engine.name} tree={spec.root!r} sgd={sgd}")
    compare_trajectories(train_steps(engine, spec, sgd, batches), train_steps(ORACLE, spec, sgd, batches), spec,
                         sgd.lr, engine.name)


@settings(max_examples=MAX_EXAMPLES)
@given(tree_problems(), adam_specs())
def test_random_trees_follow_torch_optim_adam(engine, problem, adam):
    """One Adam/AdamW step in float64. Adam turns rounding noise of a zero gradient into a step of
    lr * noise / eps, and behind a batch norm zero gradients are the rule; the noise allowance is
    test_norm_stacks' (64 u of the gradient scale, times the batch norms' |weight| / sqrt(eps))."""
    _require(engine)
    engine.require(adam.kind)
    spec, batches = problem
    note(f"engine={engine.name} tree={spec.root!r} adam={adam}")
    ref, got = train_steps(ORACLE, spec, adam, batches), train_steps(engine, spec, adam, batches)
    gs = gradient_scale(ref[0]["pass"])
    noise = 64 * np.finfo(DTYPE).eps * gs * spec.batchnorm_gain()
    compare_trajectories(got, ref, spec, adam.lr / max(gs, 1e-30), engine.name,
                         param_atol=adam.lr * min(1.0, noise / adam.eps))
