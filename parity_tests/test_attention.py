"""Properties of MultiheadAttention (and of the TransformerEncoderLayer that holds one) beyond the
catalog's layer-by-layer checks (test_layers.py runs
those on it without masks: output, dL/dx, every parameter gradient, finite differences, no
mutation): torch's masks. A catalog case gets drawn masks (a boolean key_padding_mask, a
boolean or float attn_mask of (T, T) or (B * num_heads, T, T), or is_causal=True), never one
that masks every key of a query; the layer's forward(x, key_padding_mask=..., attn_mask=...,
is_causal=...) and backward must give torch's output, dL/dx and every gradient (normwise, the
catalog's tolerances), and leave the masks as they were. A gradient that leaks through a masked
key (a causal mask applied in the forward but not in the backward) changes dL/dx and the
projections' gradients by O(1) of the scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine_core.attention_checks import additive_mask

from .catalog import CATALOG, build_case, layer_cases
from .compare import check_close, max_abs
from .engines import Engine, oracle

ORACLE = oracle()
# Per example: one torch module and one engine layer, forward and backward.
MAX_EXAMPLES = max(2, settings().max_examples // 2)


@st.composite
def masks(draw: st.DrawFn, batch: int, steps: int, heads: int) -> dict[str, Any]:
    """Keyword arguments of forward: any combination of torch's masks (booleans True where a key
    is masked, floats added to the scores), none masking every key of a query."""
    given: dict[str, Any] = {}
    if draw(st.booleans()):
        given["key_padding_mask"] = draw(arrays(np.bool_, (batch, steps)))
    form = draw(st.sampled_from(["none", "causal", "bool", "float", "per_head"]))
    if form == "causal":
        given["is_causal"] = True
    elif form == "bool":
        given["attn_mask"] = draw(arrays(np.bool_, (steps, steps)))
    elif form in ("float", "per_head"):
        shape = (steps, steps) if form == "float" else (batch * heads, steps, steps)
        given["attn_mask"] = draw(arrays(np.float64, shape, elements=st.floats(-3.0, 3.0, allow_subnormal=False)))
    try:
        additive_mask("", batch, steps, heads, **given)
    except ValueError:
        assume(False)  # a query with every key masked: refused, its own test
    return given


def _as(engine: Engine, value: Any, dtype: str) -> Any:
    """A mask as the engine's array (a NumPy bool mask stays bool; a float one takes the layer's dtype)."""
    if not isinstance(value, np.ndarray):
        return value
    if hasattr(engine.module, "asarray"):
        return engine.module.asarray(value, "bool" if value.dtype == np.bool_ else dtype)
    return value


def _reference(layer: Any, x: np.ndarray, delta: np.ndarray, dtype: str, given: dict[str, Any]) -> dict[str, Any]:
    """The oracle's own torch module (torch.nn.MultiheadAttention, TransformerEncoderLayer) with
    the masks, through autograd."""
    import torch

    module = layer.module
    t = torch.tensor(x, dtype=getattr(torch, dtype), requires_grad=True)
    y = module(t, **{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in given.items()})
    y.backward(torch.from_numpy(delta).to(t.dtype))
    grads = {k: (p.grad.T if k in layer.transposed else p.grad).double().numpy()
             for k, p in module.named_parameters()}
    assert t.grad is not None
    return {"out": y.detach().double().numpy(), "dx": t.grad.double().numpy(), "grads": grads}


# The masks' keyword arguments, as each layer's forward names them (torch's names).
MASK_KEYWORDS = {
    "multiheadattention": {"key_padding_mask": "key_padding_mask", "attn_mask": "attn_mask", "is_causal": "is_causal"},
    "transformerencoderlayer": {"key_padding_mask": "src_key_padding_mask", "attn_mask": "src_mask",
                                "is_causal": "is_causal"},
}


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask and attn_mask")  # torch's, bool + float
@pytest.mark.parametrize("kind", list(MASK_KEYWORDS))
@settings(max_examples=MAX_EXAMPLES)
@given(data=st.data())
def test_masked_self_attention_gives_torchs_output_and_gradients(engine, kind, data):
    """MultiheadAttention, and a TransformerEncoderLayer whose self_attn gets the masks."""
    engine.require_layers(kind, why="attention is optional in the protocol")
    case = data.draw(layer_cases(CATALOG[kind]))
    assume(not engine.unsupported(case.spec))
    args = case.spec.args
    batch, steps = (case.input_shape[0], case.input_shape[1]) if args["batch_first"] else \
        (case.input_shape[1], case.input_shape[0])
    heads = args["num_heads"] if kind == "multiheadattention" else args["nhead"]
    drawn = data.draw(masks(batch, steps, heads), label="masks")
    given_masks = {MASK_KEYWORDS[kind][k]: v for k, v in drawn.items()}
    note(f"engine={engine.name} case={case!r} masks={given_masks!r}")
    kept = {k: v.copy() for k, v in given_masks.items() if isinstance(v, np.ndarray)}
    layer = build_case(engine.module, case).leaves()[0]
    out = layer.forward(engine.asarray(case.x, case.dtype), **{k: _as(engine, v, case.dtype)
                                                                for k, v in given_masks.items()})
    got = {"out": engine.to_numpy(out).astype(np.float64)}
    got["dx"] = engine.to_numpy(layer.backward(engine.asarray(case.delta, case.dtype))).astype(np.float64)
    got["grads"] = {k: engine.to_numpy(v).astype(np.float64) for k, v in layer.gradients().items()}
    want = _reference(build_case(ORACLE.module, case).leaves()[0], case.x, case.delta, case.dtype, given_masks)
    rtol = 1e-10 if case.dtype == "float64" else CATALOG[kind].rtol32
    floor = float(np.finfo(case.dtype).tiny) / rtol
    what = f"{engine.name}: {case.spec!r} ({case.dtype}) with masks {sorted(given_masks)}"
    check_close(f"{what}: output", got["out"], want["out"], max(max_abs([want["out"], case.x]), floor), case.dtype,
                rtol=rtol)
    scale = max(max_abs([want["dx"], case.delta, *want["grads"].values()]), floor)
    differing = []
    for name, a, b in [("dL/dx", got["dx"], want["dx"]),
                       *((f"grads[{k!r}]", got["grads"].get(k), v) for k, v in want["grads"].items())]:
        try:
            check_close(f"{what}: {name}", a, b, scale, case.dtype, rtol=rtol)
        except AssertionError as error:
            differing.append((name, error))
    if differing:
        raise type(differing[0][1])(f"{differing[0][1]}\n    differing: {', '.join(n for n, _ in differing)}")
    for key, value in kept.items():
        assert np.array_equal(given_masks[key], value), f"{what}: the caller's {key} was written to"
