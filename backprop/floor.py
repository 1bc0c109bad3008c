"""The GEMM floor: only the matrix multiplies one training step needs, in the same library and
shapes as the engines run them, each done the fastest way that library offers.

A floor that a complete engine can beat measures a slow way of multiplying, not the library's
limit. So for every product a step needs, every formulation the library offers is timed once
at start-up (operand layouts: the weight as (in, out) or as torch stores Linear weights,
(out, in), activations batch-major or feature-major (im2col's columns as (Cin*k*k, B*Ho*Wo)),
with transposed views where the product needs them; call forms: NumPy's matmul or
dot, into a preallocated ``out=`` or a fresh array; torch's mm, matmul,
nn.functional.linear, addmm, with and without ``out=``), and the floor runs the fastest of
each product (choose_formulations; ties go to the earlier formulation in FORMULATIONS order,
so the choice is deterministic for equal timings).

The products are backprop.gemms' (network_gemms: per layer with a weight, forward, weight
gradient and input gradient; a Conv2d in its im2col formulation, the columns (B*Ho*Wo, Cin*k*k)
times the weight; a recurrent layer's input projection over all steps, its per-step products
with W_hh each way, and its weight gradients over all steps).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .gemms import Gemm, training_gemms

# The weight as (in, out), or as torch.nn.Linear stores it, (out, in); activations and deltas
# batch-major (rows, features), as the MLP engines hold them, or feature-major (features, rows),
# as an im2col convolution may hold its columns (then the products come out transposed).
WEIGHT_LAYOUTS = ("in_out", "out_in")
ACTIVATION_LAYOUTS = ("batch_major", "feature_major")
# Call forms per library, in tie-breaking order (the plain, preallocated form first).
CALLS = {
    "numpy": ("matmul out=", "matmul", "dot out=", "dot"),
    "torch": ("mm out=", "mm", "matmul", "matmul out=", "linear", "addmm out=", "addmm"),
}


@dataclass(frozen=True)
class Formulation:
    """One way to compute a product: the weight's ``layout`` (WEIGHT_LAYOUTS), the activations'
    and deltas' ``activations`` layout (ACTIVATION_LAYOUTS) and the library ``call`` (one of
    CALLS[library])."""

    layout: str
    call: str
    activations: str = "batch_major"

    @property
    def name(self) -> str:
        weight = self.layout.replace("_", ",").join("()")
        return f"{self.call} W{weight} {self.activations.replace('_', '-')}"


def formulations(library: str) -> list[Formulation]:
    """Every formulation of ``library`` ("numpy" or "torch"), in tie-breaking order: batch-major
    before feature-major, the (in, out) weight before (out, in), then the call forms of CALLS."""
    return [Formulation(layout, call, activations) for activations in ACTIVATION_LAYOUTS
            for layout in WEIGHT_LAYOUTS for call in CALLS[library]]


# -- operands ----------------------------------------------------------------------------------
def operands(gemm: Gemm, formulation: Formulation,
             ones: Callable[[tuple[int, ...]], Any]) -> tuple[Any, Any, tuple[int, int]]:
    """(a, b, result shape) for ``gemm`` laid out as ``formulation`` says, arrays made by ``ones``
    (shape -> a C-contiguous array) and transposed as views (``.T``) where the product reads them
    transposed. Batch-major: x (rows, in), delta (rows, out); the results z (rows, out), the
    weight gradient in the weight's layout, dx (rows, in). Feature-major: x^T (in, rows), delta^T
    (out, rows); the results z^T = W^T x^T (out, rows), the weight gradient in the weight's
    layout, dx^T = W delta^T (in, rows)."""
    rows, fan_in, fan_out = gemm.dims
    in_out = formulation.layout == "in_out"
    weight = ones((fan_in, fan_out)) if in_out else ones((fan_out, fan_in))
    w_in_out = weight if in_out else weight.T  # W as (in, out), a view when stored (out, in)
    if formulation.activations == "batch_major":
        x, delta = ones((rows, fan_in)), ones((rows, fan_out))
        if gemm.role == "forward":
            return x, w_in_out, (rows, fan_out)
        if gemm.role == "grad_weight":
            return (x.T, delta, (fan_in, fan_out)) if in_out else (delta.T, x, (fan_out, fan_in))
        return delta, w_in_out.T, (rows, fan_in)
    xt, deltat = ones((fan_in, rows)), ones((fan_out, rows))
    if gemm.role == "forward":
        return w_in_out.T, xt, (fan_out, rows)
    if gemm.role == "grad_weight":
        return (xt, deltat.T, (fan_in, fan_out)) if in_out else (deltat, xt.T, (fan_out, fan_in))
    return w_in_out, deltat, (fan_in, rows)


def prepare(library: str, gemm: Gemm, formulation: Formulation, dtype: str, device: str = "cpu") -> Callable[[], Any]:
    """A closure computing ``gemm`` once as ``formulation`` says, operands made in advance."""
    if library == "numpy":
        return _prepare_numpy(gemm, formulation, dtype)
    return _prepare_torch(gemm, formulation, dtype, device)


def _prepare_numpy(gemm: Gemm, formulation: Formulation, dtype: str) -> Callable[[], Any]:
    a, b, shape = operands(gemm, formulation, lambda s: np.ones(s, dtype))
    out = np.empty(shape, dtype)
    matmul, dot = np.matmul, np.dot
    return {
        "matmul out=": lambda: matmul(a, b, out=out),
        "matmul": lambda: matmul(a, b),
        "dot out=": lambda: dot(a, b, out=out),
        "dot": lambda: dot(a, b),
    }[formulation.call]


def _prepare_torch(gemm: Gemm, formulation: Formulation, dtype: str, device: str) -> Callable[[], Any]:
    import torch

    kind = getattr(torch, dtype)
    a, b, shape = operands(gemm, formulation, lambda s: torch.ones(s, dtype=kind, device=device))
    out = torch.empty(shape, dtype=kind, device=device)
    bias = torch.zeros(shape[1], dtype=kind, device=device)
    weight = b.t()  # nn.functional.linear(a, w) = a @ w^T
    mm, matmul, addmm, linear = torch.mm, torch.matmul, torch.addmm, torch.nn.functional.linear
    return {
        "mm out=": lambda: mm(a, b, out=out),
        "mm": lambda: mm(a, b),
        "matmul": lambda: matmul(a, b),
        "matmul out=": lambda: matmul(a, b, out=out),
        "linear": lambda: linear(a, weight),
        "addmm out=": lambda: addmm(bias, a, b, beta=0, out=out),
        # the bias add is work a forward step does anyway; it can only make this form slower
        "addmm": lambda: addmm(bias, a, b),
    }[formulation.call]


# -- choosing ----------------------------------------------------------------------------------
def seconds_per_call(fn: Callable[[], Any], calls: int, timer: Callable[[], float] = time.perf_counter,
                     sync: Callable[[], None] = lambda: None) -> float:
    """Mean seconds of one call of ``fn`` over ``calls`` calls (``sync`` before reading the clock)."""
    sync()
    start = timer()
    for _ in range(calls):
        fn()
    sync()
    return (timer() - start) / calls


def time_candidates(candidates: Sequence[Callable[[], Any]], timer: Callable[[], float] = time.perf_counter,
                    rounds: int = 3, min_time: float = 2e-3, max_calls: int = 1000,
                    sync: Callable[[], None] = lambda: None) -> list[float]:
    """Best (lowest) seconds per call of each candidate over ``rounds`` interleaved rounds.

    Each candidate is first called once (warm-up and calibration); a round then makes
    ceil(min_time / the last time per call) calls (1 to ``max_calls``) so that short products
    are timed over about ``min_time`` seconds. Candidates are interleaved within every round, so a drift of
    the machine's speed hits all alike. A candidate that raises gets math.inf (it is never chosen).
    """
    calls, best = [], []
    for fn in candidates:
        try:
            once = seconds_per_call(fn, 1, timer, sync)
        except Exception:  # a call form this library version or layout refuses
            calls.append(0)
            best.append(math.inf)
            continue
        calls.append(_calls(once, min_time, max_calls))
        best.append(math.inf)
    for _ in range(rounds):
        for index, fn in enumerate(candidates):
            if calls[index]:
                seconds = seconds_per_call(fn, calls[index], timer, sync)
                best[index] = min(best[index], seconds)
                # recalibrated from this round, so that a first call that was fast by chance
                # cannot make every later round long
                calls[index] = _calls(seconds, min_time, max_calls)
    return best


def _calls(seconds: float, min_time: float, max_calls: int) -> int:
    return max(1, min(max_calls, math.ceil(min_time / seconds) if seconds > 0 else max_calls))


def fastest(times: Sequence[float]) -> int:
    """Index of the lowest time; ties go to the lowest index (deterministic). ValueError when
    none is finite."""
    finite = [(t, i) for i, t in enumerate(times) if math.isfinite(t)]
    if not finite:
        raise ValueError("no formulation could be timed")
    return min(finite)[1]


@dataclass(frozen=True)
class Choice:
    """The formulation chosen for one product, its seconds per call, and every candidate's time."""

    gemm: Gemm
    formulation: Formulation
    seconds: float
    times: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"product": self.gemm.what, "m": self.gemm.m, "k": self.gemm.k, "n": self.gemm.n,
                "formulation": self.formulation.name, "us": 1e6 * self.seconds,
                "candidates_us": {k: (1e6 * v if math.isfinite(v) else None) for k, v in self.times.items()}}


def choose_formulations(library: str, gemms: Sequence[Gemm], dtype: str, device: str = "cpu",
                        timer: Callable[[], float] = time.perf_counter, rounds: int = 3, min_time: float = 2e-3,
                        sync: Callable[[], None] = lambda: None,
                        prepare_fn: Callable[[str, Gemm, Formulation, str, str], Callable[[], Any]] = prepare,
                        ) -> list[Choice]:
    """For each product, every formulation of ``library`` timed (time_candidates) and the fastest
    chosen (fastest). ``timer`` and ``prepare_fn`` are injectable for tests."""
    options = formulations(library)
    choices = []
    measured: dict[tuple[int, int, int, str], list[float]] = {}  # equal products (a deep MLP's) timed once
    for gemm in gemms:
        key = (gemm.m, gemm.k, gemm.n, gemm.role)
        if key not in measured:
            measured[key] = time_candidates([prepare_fn(library, gemm, f, dtype, device) for f in options], timer,
                                            rounds, min_time, sync=sync)
        times = measured[key]
        best = fastest(times)
        choices.append(Choice(gemm, options[best], times[best], {f.name: t for f, t in zip(options, times)}))
    return choices


class Floor:
    """The chosen formulations of one step's products, run in order by calling the object.

    choices: one Choice per product (Choice.to_json for bench.json); estimate: the sum of the
    chosen formulations' best times, seconds per step.
    """

    def __init__(self, library: str, choices: Sequence[Choice], dtype: str, device: str = "cpu") -> None:
        self.library = library
        self.choices = list(choices)
        self._ops = [prepare(library, c.gemm, c.formulation, dtype, device) for c in self.choices]

    @property
    def estimate(self) -> float:
        return sum(c.seconds for c in self.choices)

    def __call__(self) -> None:
        for op in self._ops:
            op()


def make_floor(library: str, sizes: list[int] | None, batch: int, dtype: str, device: str = "cpu",
               gemms: Sequence[Gemm] | None = None, rounds: int = 3, min_time: float = 2e-3,
               sync: Callable[[], None] = lambda: None) -> Floor:
    """The floor of an MLP (``sizes``) or of any product list (``gemms``) in ``library`` ("numpy"
    or "torch" on ``device``), its formulations chosen by a short measurement now."""
    products = list(gemms) if gemms is not None else training_gemms(list(sizes or []), batch)
    return Floor(library, choose_formulations(library, products, dtype, device, rounds=rounds, min_time=min_time,
                                              sync=sync), dtype, device)
