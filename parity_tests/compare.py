"""Running one engine on one problem, and comparing two engines with reports a person can act on.

Tolerances are normwise: |got - want| <= rtol * scale, where scale is the size of the numbers
the quantity was computed from (not of the quantity itself, which can cancel to ~0).
- float64: rtol = 1e-10 (the issue's bound). Rounding in these networks is ~1e-15 relative.
- float32: rtol = 2e-4. Unit roundoff is 6e-8; a dot product of length n <= 32 errs by at
  most n*u*sum|a_i b_i| (~2e-6 of the scale), and at most 4 layers forward and 4 back compound
  this (the engines use different BLAS kernels, exp and summation orders, so their roundings
  are independent): ~2e-5 worst case in practice, and 2e-4 leaves a 10x margin. A real bug (a
  missing 1/B for B >= 2, a derivative taken at the wrong layer) errs by O(1) of the scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engines import Engine
from .strategies import Batch, NetSpec

RTOL = {"float64": 1e-10, "float32": 2e-4}


@dataclass
class Pass:
    """Everything one forward + backward produced, as float64 NumPy arrays."""

    logits: np.ndarray
    loss: float
    dlogits: np.ndarray
    deltas: list[np.ndarray]
    grads: dict[str, np.ndarray]
    dx: np.ndarray | None


def run_pass(engine: Engine, net, spec: NetSpec, batch: Batch) -> Pass:
    loss_fn = engine.SoftmaxCrossEntropy()
    logits = net.forward(engine.asarray(batch.x, spec.dtype))
    loss = loss_fn.forward(logits, engine.labels(batch.y))
    d = loss_fn.backward()
    dlogits = engine.to_numpy(d)
    dx = net.backward(d)
    return Pass(
        logits=engine.to_numpy(logits).astype(np.float64),
        loss=float(loss),
        dlogits=dlogits.astype(np.float64),
        deltas=[engine.to_numpy(t).astype(np.float64) for t in net.deltas()],
        grads={k: engine.to_numpy(v).astype(np.float64) for k, v in net.grads().items()},
        dx=None if dx is None else engine.to_numpy(dx).astype(np.float64),
    )


def max_abs(arrays) -> float:
    return max((float(np.max(np.abs(a))) if np.size(a) else 0.0) for a in arrays)


class Mismatch(AssertionError):
    pass


def check_close(what: str, got, want, scale: float, dtype: str, context: str = "",
                atol: float | np.ndarray = 0.0, rtol: float | None = None) -> None:
    """Raise a Mismatch naming the quantity, the worst element, expected vs got and the bound
    |got - want| <= rtol * scale + atol (rtol: RTOL[dtype] unless given; atol a number, or an
    array of got's shape for a bound per element, the worst element then the one furthest past
    its own bound), with a summary of the whole array (its shape, how many elements are out of
    tolerance, the largest difference and where): never the arrays themselves, which can run to
    hundreds of lines. Non-finite values in got always fail."""
    __tracebackhide__ = True  # a failure points at the caller's check, not at this helper's arrays
    rtol = RTOL[dtype] if rtol is None else rtol
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise Mismatch(f"{what}: shape {got.shape}, expected {want.shape}. {context}")
    finite = np.isfinite(got)
    if not np.all(finite):
        first = _index(np.unravel_index(int(np.argmin(finite)), got.shape) if got.ndim else ())
        raise Mismatch(f"{what}: got {np.size(got) - int(np.count_nonzero(finite))} non-finite value(s) of "
                       f"{np.size(got)} (shape {got.shape}), the first at index {first}: {float(got[first])!r}, "
                       f"expected {float(want[first])!r}. {context}")
    if got.size == 0:
        return
    atol = np.broadcast_to(np.asarray(atol, dtype=np.float64), got.shape)
    bound = rtol * scale + atol
    err = np.abs(got - want)
    worst = _index(np.unravel_index(int(np.argmax(err - bound)), err.shape) if err.ndim else ())
    if err[worst] > bound[worst]:
        raise Mismatch(
            f"{what} differs at index {worst}: expected {float(want[worst])!r}, "
            f"got {float(got[worst])!r}; |diff| = {err[worst]:.3e} > {bound[worst]:.3e} "
            f"(rtol {rtol:g} x scale {scale:.3e}{f' + {atol[worst]:.3e}' if atol[worst] else ''}, {dtype})"
            f"{_summary(err, bound, worst)}. {context}".rstrip()
        )


def _index(index: tuple) -> tuple[int, ...]:
    return tuple(int(i) for i in index)


def _summary(err: np.ndarray, bound: np.ndarray, worst: tuple[int, ...]) -> str:
    """For an array of more than one element: how many elements are out of tolerance, and the
    largest difference where it is not at the worst element."""
    if err.size <= 1:
        return ""
    summary = f"; {int(np.count_nonzero(err > bound))} of {err.size} elements (shape {err.shape}) out of tolerance"
    largest = _index(np.unravel_index(int(np.argmax(err)), err.shape))
    if largest != worst:
        summary += f", the largest |diff| {err[largest]:.3e} at index {largest}"
    return summary


def forward_scale(pre_activations: list[np.ndarray]) -> float:
    """The size of the numbers the logits are computed from: every layer's pre-activation."""
    return max(max_abs(pre_activations), np.finfo(np.float64).tiny)


def gradient_scale(ref: Pass) -> float:
    """The size of every backprop quantity: dL/dlogits, each delta, each gradient."""
    return max(max_abs([ref.dlogits, *ref.deltas, *ref.grads.values()]), np.finfo(np.float64).tiny)


def compare_passes(got: Pass, ref: Pass, spec: NetSpec, pre: list[np.ndarray], name: str) -> None:
    """Logits, loss, dL/dlogits, every delta, every gradient and dL/dx, got vs ref."""
    fs, gs = forward_scale(pre), gradient_scale(ref)
    check_close(f"{name}: logits", got.logits, ref.logits, fs, spec.dtype)
    check_close(f"{name}: loss", got.loss, ref.loss, max(fs, abs(ref.loss)), spec.dtype)
    check_close(f"{name}: dL/dlogits", got.dlogits, ref.dlogits, gs, spec.dtype)
    if len(got.deltas) != len(ref.deltas):
        raise Mismatch(f"{name}: {len(got.deltas)} deltas, expected {len(ref.deltas)} (one per Linear and Conv2d)")
    for i, (a, b) in enumerate(zip(got.deltas, ref.deltas)):
        check_close(f"{name}: deltas[{i}] (dL/dz of the Linear or Conv2d number {i})", a, b, gs, spec.dtype)
    if sorted(got.grads) != sorted(ref.grads):
        raise Mismatch(f"{name}: gradient keys {sorted(got.grads)}, expected {sorted(ref.grads)}")
    for key in ref.grads:
        check_close(f"{name}: grads[{key!r}]", got.grads[key], ref.grads[key], gs, spec.dtype)
    if got.dx is not None and ref.dx is not None:
        check_close(f"{name}: dL/dx", got.dx, ref.dx, max(gs, max_abs([ref.dx])), spec.dtype)


def train_steps(engine, spec, opt_spec, batch_list):
    """Run the batches through one engine, one optimizer step each; per step: parameters,
    buffers and the pass."""
    net = spec.build(engine)
    opt = opt_spec.build(engine, net)
    history = []
    for batch in batch_list:
        opt.zero_grad()
        result = run_pass(engine, net, spec, batch)
        opt.step()
        history.append({"pass": result, **snapshot(net, opt)})
    return history


def snapshot(net, opt) -> dict:
    """A trajectory entry's state after a step: the net's parameters and the optimizer's buffers,
    as float64 NumPy arrays (compare_trajectories reads them)."""
    state = opt.state_dict()
    return {
        "params": {k: np.asarray(v, np.float64) for k, v in net.state_dict().items()},
        "buffers": {buf: {k: np.asarray(v, np.float64) for k, v in per.items()} for buf, per in state["state"].items()},
    }


def compare_trajectories(got, ref, spec, lr, name, param_atol=0.0):
    """Report the first step at which any parameter or buffer left tolerance."""
    for step, (g, r) in enumerate(zip(got, ref), start=1):
        gs = gradient_scale(r["pass"])
        for key, want in r["params"].items():
            previous = ref[step - 2]["params"][key] if step > 1 else want
            scale = max(max_abs([want, previous]), lr * gs, np.finfo(float).tiny)
            check_close(f"{name}: step {step}: parameter {key!r}", g["params"][key], want, scale,
                        spec.dtype, f"(first step out of tolerance: {step})", atol=param_atol)
        if sorted(g["buffers"]) != sorted(r["buffers"]):
            raise Mismatch(
                f"{name}: step {step}: optimizer buffers {sorted(g['buffers'])}, "
                f"expected {sorted(r['buffers'])}"
            )
        for buf, per in r["buffers"].items():
            for key, want in per.items():
                scale = max(max_abs([want]), gs, np.finfo(float).tiny)
                if buf in ("exp_avg_sq", "max_exp_avg_sq"):
                    scale = max(max_abs([want]), gs * gs, np.finfo(float).tiny)
                check_close(f"{name}: step {step}: {buf}[{key!r}]", g["buffers"][buf][key], want,
                            scale, spec.dtype, f"(first step out of tolerance: {step})")
