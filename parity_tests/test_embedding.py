"""Embedding against torch.nn.Embedding: integer indices of any shape (repeats drawn on purpose:
few rows, many positions), padding_idx none, positive or negative; the output, the weight
gradient (repeated indices add up, the padding row gets none) and no input gradient, in both
dtypes; the caller's indices and delta never written to; an index out of range refused in
every engine with the same words, naming the layer. (The layer takes integers, so it is not in
the catalog of float-input layers that test_layers.py runs.)

Tolerances: float64 1e-10; float32: the output is a copy (exact) and a gradient row a sum of at
most 24 rounded values in some order: <= 24 u of the sum of |terms|, inside the catalog's
default 2e-4 of the scale.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine_core.specs import LayerSpec, build

from .compare import check_close, max_abs
from .engines import Engine, oracle
from .strategies import DTYPES

ORACLE = oracle()
RTOL32 = 2e-4


@st.composite
def embedding_cases(draw: st.DrawFn) -> tuple[LayerSpec, np.ndarray, np.ndarray, str, dict[str, np.ndarray]]:
    rows, width = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    padding = draw(st.none() | st.integers(-rows, rows - 1))
    spec = LayerSpec("embedding", {"num_embeddings": rows, "embedding_dim": width, "padding_idx": padding})
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=2)))
    indices = draw(arrays(np.int64, shape, elements=st.integers(0, rows - 1)))
    delta = draw(arrays(np.float64, (*shape, width), elements=st.floats(-1.0, 1.0, allow_subnormal=False)))
    seed = draw(st.integers(0, 2**32 - 1))
    state = {"0.weight": np.random.default_rng(seed).uniform(-2.0, 2.0, (rows, width))}
    return spec, indices, delta, draw(st.sampled_from(DTYPES)), state


def _indices(engine: Engine, indices: np.ndarray):  # type: ignore[no-untyped-def]
    return engine.module.asarray(indices, "int64") if hasattr(engine.module, "asarray") else indices


def _run(engine: Engine, spec: LayerSpec, indices: np.ndarray, delta: np.ndarray, dtype: str,
         state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, object]:
    """(output, grad weight, what backward returned) of the layer alone, loaded with ``state``."""
    layer = build(engine.module, [spec], dtype).leaves()[0]
    weight = layer.parameters()["weight"]
    if isinstance(weight, np.ndarray):
        weight[...] = state["0.weight"]
    else:
        import torch

        weight.copy_(torch.from_numpy(state["0.weight"]))
    out = engine.to_numpy(layer.forward(_indices(engine, indices))).astype(np.float64)
    returned = layer.backward(engine.asarray(delta, dtype))
    return out, engine.to_numpy(layer.gradients()["weight"]).astype(np.float64), returned


@settings(max_examples=max(2, settings().max_examples // 2))
@given(embedding_cases())
def test_embedding_gives_torchs_output_and_weight_gradient(engine, case):
    engine.require_layers("embedding", why="embeddings are optional in the protocol")
    spec, indices, delta, dtype, state = case
    note(f"engine={engine.name} spec={spec!r} indices={indices!r} delta={delta!r} dtype={dtype} state={state!r}")
    kept = indices.copy(), delta.copy()
    out, grad, returned = _run(engine, spec, indices, delta, dtype, state)
    assert np.array_equal(indices, kept[0]) and np.array_equal(delta, kept[1]), "the caller's arrays were written"
    assert returned is None, f"{engine.name}: backward returned {type(returned).__name__}, expected None (indices " \
                             "have no gradient)"
    # The reference: torch.nn.Embedding through autograd.
    import torch

    module = build(ORACLE.module, [spec], dtype).leaves()[0].module
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(state["0.weight"]))
    y = module(torch.from_numpy(indices))
    y.backward(torch.from_numpy(delta).to(y.dtype))
    want_grad = module.weight.grad.double().numpy()
    rtol = 1e-10 if dtype == "float64" else RTOL32
    what = f"{engine.name}: {spec!r} ({dtype}) on indices of shape {indices.shape}"
    check_close(f"{what}: output", out, y.detach().double().numpy(), max(max_abs([state["0.weight"]]), 1.0),
                "float64", rtol=rtol)
    check_close(f"{what}: grads['weight']", grad, want_grad, max(max_abs([want_grad, delta]), 1e-30), "float64",
                rtol=rtol)
    if spec.args["padding_idx"] is not None:
        assert not grad[spec.args["padding_idx"] % spec.args["num_embeddings"]].any(), f"{what}: the padding row"


@pytest.mark.parametrize("bad", [-1, 3])
def test_an_index_out_of_range_is_refused_naming_the_layer_and_the_index(engine, bad):
    engine.require_layers("embedding", why="embeddings are optional in the protocol")
    layer = build(engine.module, [LayerSpec("embedding", {"num_embeddings": 3, "embedding_dim": 2})],
                  "float64").leaves()[0]
    with pytest.raises(ValueError, match=rf"indices: {bad} is outside \[0, 3\) \(num_embeddings=3\)"):
        layer.forward(_indices(engine, np.array([[0, bad]])))
    with pytest.raises(TypeError, match=r"indices: expected an integer array"):
        layer.forward(engine.asarray(np.array([0.0, 1.0]), "float64"))
