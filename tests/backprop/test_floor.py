"""The GEMM floor (backprop/floor.py): its formulations of each product, their timing and choice (a
fake clock: no wall-clock assertions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backprop.floor import (
    CALLS,
    Formulation,
    choose_formulations,
    fastest,
    formulations,
    make_floor,
    operands,
    prepare,
    time_candidates,
)
from backprop.gemms import Gemm, training_gemms


def test_the_floor_runs_the_gemms_it_counts():
    for library in ("numpy", "torch"):
        run = make_floor(library, [5, 4, 3], 2, "float64")
        run()  # no error: every operand has the shape its Gemm says


class FakeClock:
    """A clock that only moves when a fake product runs: each call of ``work(cost)`` adds cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, cost: float):
        def run() -> None:
            self.now += cost

        return run


# -- formulations -------------------------------------------------------------------------------
def _canonical(rows=5, fan_in=3, fan_out=2):
    rng = np.random.default_rng(0)
    x, delta, w = rng.standard_normal((rows, fan_in)), rng.standard_normal((rows, fan_out)), \
        rng.standard_normal((fan_in, fan_out))
    by_shape = {x.shape: x, x.T.shape: x.T, delta.shape: delta, delta.T.shape: delta.T, w.shape: w, w.T.shape: w.T}
    return x, delta, w, lambda shape: np.ascontiguousarray(by_shape[shape])


@pytest.mark.parametrize("role", ["forward", "grad_weight", "grad_input"])
def test_every_formulation_computes_its_product_in_the_orientation_of_its_result_shape(role):
    # rows 5, in 3, out 2: every operand shape is distinct, so each array is recognisable
    x, delta, w, make = _canonical()
    gemm = {"forward": Gemm("f", 5, 3, 2, "forward"), "grad_weight": Gemm("g", 3, 5, 2, "grad_weight"),
            "grad_input": Gemm("i", 5, 2, 3, "grad_input")}[role]
    expected = {"forward": x @ w, "grad_weight": x.T @ delta, "grad_input": delta @ w.T}[role]
    for formulation in formulations("numpy"):
        a, b, shape = operands(gemm, formulation, make)
        result = a @ b
        assert result.shape == shape
        wanted = expected if shape == expected.shape else expected.T
        np.testing.assert_allclose(result, wanted, rtol=1e-12, err_msg=formulation.name)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_every_call_form_runs_and_multiplies(library):
    gemm = Gemm("g", 3, 4, 2, "grad_weight")
    for formulation in formulations(library):
        result = prepare(library, gemm, formulation, "float64")()
        values = np.asarray(result)  # torch CPU tensors convert without a copy
        # ones times ones: every entry is the inner dimension (the batch rows here, 4)
        assert values.shape in ((3, 2), (2, 3)) and np.all(values == 4.0), formulation.name


def test_the_formulation_list_covers_layouts_and_call_forms_in_a_fixed_order():
    numpy_names = [f.name for f in formulations("numpy")]
    assert len(numpy_names) == len(set(numpy_names)) == 2 * 2 * len(CALLS["numpy"])
    assert numpy_names[0] == "matmul out= W(in,out) batch-major"
    assert "dot W(out,in) feature-major" in numpy_names
    torch_calls = {f.call for f in formulations("torch")}
    assert {"mm out=", "mm", "matmul", "linear", "addmm", "addmm out="} <= torch_calls


# -- choosing -----------------------------------------------------------------------------------
def test_fastest_takes_the_lowest_time_and_breaks_ties_by_order():
    assert fastest([3.0, 1.0, 2.0]) == 1
    assert fastest([2.0, 1.0, 1.0]) == 1
    assert fastest([math.inf, 5.0, 5.0]) == 1
    with pytest.raises(ValueError, match="no formulation"):
        fastest([math.inf, math.inf])


def test_time_candidates_reports_seconds_per_call_and_never_picks_a_failing_form():
    clock = FakeClock()

    def broken() -> None:
        raise RuntimeError("out= not supported")

    times = time_candidates([clock.work(2e-6), broken, clock.work(5e-4)], timer=clock, rounds=2, min_time=1e-3)
    assert times[0] == pytest.approx(2e-6) and times[2] == pytest.approx(5e-4)
    assert times[1] == math.inf


def test_time_candidates_calibrates_calls_to_min_time():
    clock, calls = FakeClock(), []

    def counted() -> None:
        calls.append(1)
        clock.now += 1e-4

    time_candidates([counted], timer=clock, rounds=2, min_time=1e-3)
    assert len(calls) == 1 + 10 + 10  # one calibration call, then ceil(1e-3 / 1e-4) per round


def test_choose_formulations_picks_the_cheapest_per_product_and_times_equal_products_once():
    clock, prepared = FakeClock(), []
    options = formulations("torch")
    cheap_for = {"forward": options[5], "grad_weight": options[-1], "grad_input": options[2]}

    def fake_prepare(library, gemm, formulation, dtype, device):
        prepared.append((gemm.what, formulation))
        return clock.work(1.0 if formulation == cheap_for[gemm.role] else 10.0)

    gemms = training_gemms([784, 64, 64, 64, 10], 32)
    choices = choose_formulations("torch", gemms, "float32", timer=clock, rounds=2, prepare_fn=fake_prepare)
    assert [c.formulation for c in choices] == [cheap_for[g.role] for g in gemms]
    assert all(c.seconds == 1.0 for c in choices)
    # layers 2 and 4 are the same 64x64 Linear: 11 products, 8 distinct, each timed in every form once
    assert len(gemms) == 11 and len(prepared) == 8 * len(options)
    report = choices[0].to_json()
    assert report["formulation"] == cheap_for["forward"].name and len(report["candidates_us"]) == len(options)


def test_choose_formulations_breaks_ties_deterministically():
    clock = FakeClock()  # whole seconds: every form's time is exactly equal
    choices = choose_formulations("numpy", training_gemms([4, 3, 2], 2), "float64", timer=clock, rounds=2,
                                  prepare_fn=lambda *args: clock.work(1.0))
    assert {c.formulation for c in choices} == {Formulation("in_out", "matmul out=")}
