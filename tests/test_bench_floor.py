"""The measurement logic of `backprop bench`: the floor's formulations and their choice, the
thread-count rule, default steps, below-floor flags, per-phase rows (fake timers; no wall-clock
assertions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backprop import threads
from backprop.architecture import LENET, parse_layers
from backprop.benchmark import (
    PHASES,
    WORKLOADS,
    BenchSettings,
    CompiledReference,
    below_floor,
    bench_case,
    default_steps,
    floor_warnings,
    format_table,
    formulation_summary,
    noise_warning,
    spread,
    unstable,
    unstable_warnings,
    workload_gemms,
    workload_network,
)
from backprop.engines import load_engine
from backprop.floor import (
    CALLS,
    Formulation,
    choose_formulations,
    fastest,
    formulations,
    operands,
    prepare,
    time_candidates,
)
from backprop.gemms import Gemm, network_gemms, training_gemms
from engine_core.specs import LayerSpec, mlp, mlp_of


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


# -- products -----------------------------------------------------------------------------------
def test_lenet_products_are_its_im2col_and_linear_gemms():
    gemms = network_gemms(LENET, 2)
    forward = [(g.m, g.k, g.n) for g in gemms if g.role == "forward"]
    assert forward == [(2 * 28 * 28, 25, 6), (2 * 10 * 10, 150, 16), (2, 400, 120), (2, 120, 84), (2, 84, 10)]
    assert [g.dims for g in gemms if g.role == "grad_input"] == [(2, 84, 10), (2, 120, 84), (2, 400, 120),
                                                                 (200, 150, 16)]  # not conv1's
    assert len(gemms) == 5 + 5 + 4 and gemms == workload_gemms("lenet", 2)


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


# -- threads ------------------------------------------------------------------------------------
def test_thread_candidates_are_powers_of_two_and_the_core_count():
    assert threads.thread_candidates(1) == [1]
    assert threads.thread_candidates(2) == [1, 2]
    assert threads.thread_candidates(6) == [1, 2, 4, 6]
    assert threads.thread_candidates(8) == [1, 2, 4, 8]


def test_choose_threads_takes_the_fastest_and_ties_go_to_fewer_threads():
    assert threads.choose_threads({1: 3e-4, 2: 2e-4}) == 2
    assert threads.choose_threads({1: 2e-4, 2: 2e-4, 4: 5e-4}) == 1
    with pytest.raises(ValueError):
        threads.choose_threads({})


def test_parse_threads_takes_counts_and_auto_only():
    assert threads.parse_threads("auto") == "auto" and threads.parse_threads("3") == 3
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="positive number of threads or 'auto'"):
            threads.parse_threads(bad)


def test_trains_auto_rule_is_one_thread_per_mflop_of_the_largest_gemm_within_1_and_the_cores():
    from backprop.benchmark import WORKLOADS, workload_gemms

    small = training_gemms([784, 8, 10], 16)  # largest: 2 * 16 * 784 * 8 = 200,704 FLOPs
    assert threads.rule_threads(small, cores=2) == 1 and threads.rule_threads([], cores=2) == 1
    big = training_gemms([784, 128, 10], 16)  # 2 * 16 * 784 * 128 = 3,211,264 FLOPs
    assert threads.rule_threads(big, cores=2) == 2 and threads.rule_threads(big, cores=64) == 3
    assert threads.rule_threads(big, cores=1) == 1
    # On 2 cores, where bench measured 2 threads fastest for every workload and batch size: 2.
    for workload, spec in WORKLOADS.items():
        for batch in spec["batch_sizes"]:
            assert threads.rule_threads(workload_gemms(workload, batch), cores=2) == 2, (workload, batch)


def test_more_threads_than_cores_is_a_one_line_warning_naming_the_cores():
    assert threads.oversubscription_warning(2, cores=2) is None
    warning = threads.oversubscription_warning(64, cores=2)
    assert warning is not None and "\n" not in warning
    assert warning.startswith("64 threads for the GEMMs are more than the 2 cores") and "--blas-threads 2" in warning


def test_the_summary_gives_trains_rule_beside_the_measured_count():
    assert formulation_summary([_row("numpy", threads_rule=2)])[0].startswith(
        "notebook 32 numpy floor, 1 thread (train's auto: 2): ")


# -- bench bookkeeping --------------------------------------------------------------------------
def test_default_steps_is_a_quarter_epoch_bounded_by_the_time_budget():
    assert default_steps(1875, 1e-4, budget_s=1.0) == 468  # fast steps: a quarter epoch
    assert default_steps(938, 0.05, budget_s=1.0) == 20  # slow steps: what fits in a second
    assert default_steps(938, 0.5, budget_s=1.0) == 10  # but never fewer than 10
    assert default_steps(8, 0.0, budget_s=1.0) == 50  # short epochs: enough steps for a median
    assert default_steps(59, 3e-3, budget_s=1.0) == 50  # batch 1024: not a quarter epoch's 14 steps


def _row(engine="numpy", ratio=1.5, **extra):
    row = {"engine": engine, "workload": "notebook", "batch_size": 32, "dtype": "float32", "s_per_epoch": ratio,
           "samples_per_s": 1000.0, "floor_s_per_epoch": 1.0, "floor_samples_per_s": 1.0, "ratio_to_floor": ratio,
           "below_floor": below_floor(ratio), "floor_library": "numpy", "threads": 1, "feed_fraction": 0.1,
           "gflops": 1.0, "steps_timed": 100, "repeats": 5, "seconds_per_repeat": 1.0,
           "floor_formulations": [{"formulation": "dot out= W(in,out) batch-major"},
                                  {"formulation": "matmul W(out,in) feature-major"},
                                  {"formulation": "dot out= W(in,out) batch-major"}]}
    return {**row, **extra}


def test_a_row_below_its_floor_is_flagged_warned_and_marked():
    assert below_floor(0.99) and not below_floor(1.0)
    rows = [_row("numpy", 1.2), _row("torch", 0.9)]
    warnings = floor_warnings(rows)
    assert len(warnings) == 1 and warnings[0].startswith("torch on notebook at batch 32 ran below its numpy floor "
                                                         "(0.90x)")
    table = format_table(rows).splitlines()
    assert table[2].split()[6] == "1.20" and table[3].split()[6] == "0.90!"


def test_spread_reports_the_interquartile_range_over_the_median():
    assert spread([1.0, 2.0, 4.0]) == {"min": 1.0, "median": 2.0, "max": 4.0, "q1": 1.5, "q3": 3.0, "spread": 0.75}
    # One repeat in five three times slower moves the range, not the quartiles (2nd and 4th values).
    assert spread([1.0, 1.1, 1.0, 3.0, 0.9]) == pytest.approx(
        {"min": 0.9, "median": 1.0, "max": 3.0, "q1": 1.0, "q3": 1.1, "spread": 0.1})
    assert spread([3.0])["spread"] == 0.0
    assert spread([0.0, 0.0])["spread"] == 0.0 and math.isinf(spread([0.0, 0.0, 0.0, 1.0])["spread"])
    with pytest.raises(ValueError):
        spread([])


def test_a_row_is_unstable_when_its_ratio_or_its_floor_moved_past_the_threshold():
    assert not unstable(0.10, 0.10) and unstable(0.11, 0.0) and unstable(0.0, 0.11)
    assert unstable(0.05, 0.0, threshold=0.04)
    rows = [_row("numpy", 1.2, ratio_spread=0.04, unstable=False),
            _row("torch", 1.3, ratio_spread=0.25, unstable=True, ratio_min=1.1, ratio_max=1.4, floor_spread=0.02)]
    table = format_table(rows).splitlines()
    assert table[0].split()[9] == "spread"  # after "floor s/ep" and "x floor"
    assert table[2].split()[7] == "4%" and table[3].split()[7] == "25%?"
    (warning,) = unstable_warnings(rows)
    assert warning.startswith("torch on notebook at batch 32 is unstable") and "1.10-1.40x over 5 repeats" in warning
    assert "(interquartile 25% of the median) and its floor's 2%" in warning


def test_formulation_summary_counts_the_winners_per_case():
    assert formulation_summary([_row("numpy"), _row("other")]) == [
        "notebook 32 numpy floor, 1 thread: dot out= W(in,out) batch-major x2, matmul W(out,in) feature-major x1"]


def test_noise_warning_spares_long_repeats_of_few_steps():
    assert noise_warning([_row(steps_timed=10, seconds_per_repeat=2.0)]) is None
    assert "10 timed steps" in noise_warning([_row(steps_timed=10, seconds_per_repeat=0.1)])
    assert "2 repeats" in noise_warning([_row(repeats=2)])


def test_bench_case_times_lenet_with_phases_floor_formulations_and_threads():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
    engines = [load_engine("numpy"), load_engine("autograd")]
    settings = BenchSettings(steps=2, repeats=1, warmup=1, blas_threads=1, floor_min_time=1e-4)
    rows = bench_case(engines, "lenet", 4, settings, x, y)
    assert [r["engine"] for r in rows] == ["numpy", "autograd"]
    for row in rows:
        assert set(row["phases_s"]) == set(PHASES) and all(v >= 0 for v in row["phases_s"].values())
        assert len(row["floor_formulations"]) == 14 and row["threads"] == 1 and row["blas_threads"] == 1
        assert row["ratio_min"] <= row["ratio_to_floor"] <= row["ratio_max"] and row["ratio_spread"] >= 0
        assert row["below_floor"] == (row["ratio_to_floor"] < 1)
        assert row["threads_rule"] == threads.rule_threads(workload_gemms("lenet", 4))  # beside the measured one
    assert rows[1]["torch_threads"] == 1
    # The hand-written engine's layers, one by one in forward order; autograd's run inside torch.nn.
    layers = rows[0]["layers_ms"]
    assert [entry["layer"].split("(")[0] for entry in layers] == [
        "0 Conv2d", "1 ReLU", "2 MaxPool2d", "3 Conv2d", "4 ReLU", "5 MaxPool2d", "6 Flatten", "7 Linear", "8 ReLU",
        "9 Linear", "10 ReLU", "11 Linear"]
    assert all(entry["forward_ms"] > 0 and entry["backward_ms"] > 0 for entry in layers)
    assert rows[1]["layers_ms"] is None


def test_the_per_layer_pass_leaves_the_layers_methods_as_they_were():
    from backprop.benchmark import engine_runner, layer_profile

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
    runner = engine_runner(load_engine("torch"), "notebook", 4, BenchSettings(), x, y)
    profile = layer_profile(runner, 2)
    assert profile is not None and len(profile) == len(runner.net.layers)
    assert all("forward" not in vars(layer) and "backward" not in vars(layer) for layer in runner.net.layers)


def test_a_case_runs_in_a_fresh_process_and_returns_its_rows():
    import os

    from backprop.benchmark import CaseRequest, run_isolated

    settings = BenchSettings(steps=2, repeats=2, warmup=1, blas_threads=1, phases=False, floor_min_time=1e-4)
    request = CaseRequest(("numpy", "torch"), "cpu", "notebook", 8, settings, None, None, False)
    rows = run_isolated(request)
    assert [r["engine"] for r in rows] == ["numpy", "torch"]
    assert rows[0]["pid"] == rows[1]["pid"] != os.getpid()
    assert run_isolated(request)[0]["pid"] != rows[0]["pid"]  # every case its own process
    with pytest.raises(Exception, match="no_such_engine_module"):  # the child's error comes back as raised
        run_isolated(CaseRequest(("no_such_engine_module",), "cpu", "notebook", 8, settings, None, None, False))


def test_the_compiled_row_is_skipped_with_the_reason_when_torch_compile_fails(monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise RuntimeError("no C++ compiler\nfound")

    monkeypatch.setattr(torch, "compile", refuse)
    reference = CompiledReference(load_engine("autograd"), load_engine("torch"))
    assert not reference.available()
    assert reference.reason == "torch.compile failed on a tiny model (RuntimeError: no C++ compiler found)"
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
    rows = bench_case([load_engine("numpy")], "notebook", 4, BenchSettings(steps=1, repeats=1, warmup=1, blas_threads=1,
                                                                           phases=False, floor_min_time=1e-4), x, y,
                      reference)
    assert [r["engine"] for r in rows] == ["numpy"] and rows[0]["phases_s"] is None


def test_each_library_is_timed_as_one_group_and_the_first_library_rotates():
    from types import SimpleNamespace

    from backprop.benchmark import library_groups

    runners = [SimpleNamespace(name=n, library=lib) for n, lib in
               [("numpy", "numpy"), ("torch", "torch"), ("autograd", "torch"), ("torch+compile", "torch")]]
    first = library_groups(runners)
    assert [(lib, [r.name for r in group]) for lib, group in first] == [
        ("numpy", ["numpy"]), ("torch", ["torch", "autograd", "torch+compile"])]
    assert [lib for lib, _ in library_groups(runners, first=1)] == ["torch", "numpy"]
    assert [lib for lib, _ in library_groups(runners, first=2)] == ["numpy", "torch"]
    assert library_groups([]) == []


def test_bench_case_settles_before_switching_library(monkeypatch):
    import backprop.benchmark as benchmark

    calls = []
    monkeypatch.setattr(benchmark, "settle", lambda seconds: calls.append(seconds))
    engines = [load_engine("numpy"), load_engine("torch")]
    x = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    y = np.arange(64) % 10
    settings = benchmark.BenchSettings(steps=2, repeats=2, warmup=1, blas_threads=1, phases=True,
                                       floor_min_time=1e-5, settle_s=0.25)
    benchmark.bench_case(engines, "notebook", 16, settings, x, y)
    # Two libraries: before each one's floor choice, each repeat's two groups, the phase pass and
    # the per-layer pass.
    assert calls == [0.25] * (2 + 2 * 2 + 2 + 2)


# -- recurrent products (issue 22) ----------------------------------------------------------------
def test_lstm_products_are_the_input_projection_and_every_steps_products_each_way():
    from backprop.architecture import LSTM_NETWORK

    batch, steps, hidden = 2, 28, 128
    gemms = network_gemms(LSTM_NETWORK, batch)
    assert gemms == workload_gemms("lstm", batch)
    forward = [(g.what, g.m, g.k, g.n) for g in gemms if g.role == "forward"]
    # the input projection of all 28 steps in one product, then h_{t-1} W_hh^T per step (h_0 = 0: none at
    # step 0), then the Linear head
    assert forward[0] == ("0.lstm l0 forward x@W_ih^T", steps * batch, 28, 4 * hidden)
    assert forward[1:steps] == [(f"0.lstm l0 step {t} forward h@W_hh^T", batch, hidden, 4 * hidden)
                                for t in range(1, steps)]
    assert forward[steps:] == [("2.linear forward x@W", batch, 128, 10)]
    backward = gemms[len(forward):]
    assert [g.what for g in backward[:2]] == ["2.linear grad_weight x^T@delta", "2.linear input grad delta@W^T"]
    # dgates W_hh carried back to h_{t-1}, last step first, then the weight gradients over all steps
    assert [(g.what, g.dims) for g in backward[2:steps + 1]] == [
        (f"0.lstm l0 step {t} grad_h dgates@W_hh", (batch, hidden, 4 * hidden)) for t in reversed(range(1, steps))]
    assert [(g.role, g.dims) for g in backward[steps + 1:]] == [
        ("grad_weight", (steps * batch, 28, 4 * hidden)), ("grad_weight", ((steps - 1) * batch, hidden, 4 * hidden))]
    # no dL/dx for the first layer: a step never needs it
    assert not any("dgates@W_ih" in g.what for g in gemms) and len(gemms) == 2 * steps + 4
    per_step = 2 * batch * hidden * 4 * hidden
    assert sum(g.flops for g in gemms if "W_hh" in g.what or "^T@h" in g.what) == 3 * (steps - 1) * per_step


def test_stacked_recurrent_layers_pass_their_input_gradient_down_but_the_first_does_not():
    from backprop.architecture import parse_layer

    def stack(*texts: str) -> list[LayerSpec]:  # layers as they are, for any input shape
        return [parse_layer(text) for text in texts]

    gru = stack("linear(28, 6)", "gru(6, 5, num_layers=2, batch_first=True)", "laststep(batch_first=True)",
                "linear(5, 10)")
    gemms = network_gemms(gru, 3, (28, 28))
    dx = [(g.what, g.dims) for g in gemms if "dgates@W_ih" in g.what]
    assert dx == [("1.gru l1 input grad dgates@W_ih", (28 * 3, 5, 15)),
                  ("1.gru l0 input grad dgates@W_ih", (28 * 3, 6, 15))]  # the Linear below needs l0's
    assert [g.what for g in gemms if g.role == "forward"][:2] == ["0.linear forward x@W", "1.gru l0 forward x@W_ih^T"]
    assert not any("0.linear input grad" in g.what for g in gemms)
    # T and B from the layer's input, (B, T, F) with batch_first, else (T, B, F); one step needs no W_hh product
    rnn = stack("rnn(28, 4, bias=False, batch_first=True)", "laststep(batch_first=True)", "linear(4, 10)")
    assert [(g.m, g.k, g.n) for g in network_gemms(rnn, 5, (1, 28)) if "rnn" in g.what] == [
        (5, 28, 4), (28, 5, 4)]  # forward x@W_ih^T and grad W_ih; nothing with W_hh
    time_major = stack("rnn(28, 4)", "laststep", "linear(4, 10)")  # (6, 5, 28): 6 steps of 5 sequences
    forward = [g.m for g in network_gemms(time_major, 6, (5, 28)) if g.role == "forward"]
    assert forward == [6 * 5, 5, 5, 5, 5, 5, 5]  # x@W_ih^T, 5 steps' h@W_hh^T, the Linear on (5, 4)


def test_bench_case_times_the_lstm_workload_with_its_clipping_against_its_per_step_floor():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 784)).astype(np.float32), rng.integers(0, 10, 8)
    engines = [load_engine("numpy"), load_engine("torch")]
    settings = BenchSettings(steps=1, repeats=1, warmup=1, blas_threads=1, floor_min_time=1e-5, settle_s=0.0)
    assert WORKLOADS["lstm"]["clip_grad_norm"] == 1.0 and WORKLOADS["lstm"]["batch_sizes"] == (64,)
    rows = bench_case(engines, "lstm", 4, settings, x, y)
    for row in rows:
        assert len(row["floor_formulations"]) == len(workload_gemms("lstm", 4)) == 2 * 28 + 4
        assert set(row["phases_s"]) == set(PHASES) and row["workload"] == "lstm"


def test_the_compiled_rows_time_autograd_and_the_torch_engines_hand_written_step():
    from torch_net.compiled import compile_available

    if compile_available() is not None:
        pytest.skip(f"torch.compile does not work here: {compile_available()}")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
    reference = CompiledReference(load_engine("autograd"), load_engine("torch"))
    rows = bench_case([load_engine("torch")], "notebook", 4, BenchSettings(steps=2, repeats=1, warmup=2, blas_threads=1,
                                                                           floor_min_time=1e-4), x, y, reference)
    assert [r["engine"] for r in rows] == ["torch", "autograd+compile", "torch+compile"]
    assert rows[2]["phases_note"].startswith("one compiled graph") and rows[2]["layers_ms"] is None


def test_a_case_whose_process_dies_is_reported_with_its_exit_code(tmp_path, monkeypatch):
    import sys

    from backprop.benchmark import CaseRequest, run_isolated

    (tmp_path / "dying_engine.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # the spawned process gets this path
    settings = BenchSettings(steps=1, repeats=1, warmup=1, blas_threads=1, phases=False)
    with pytest.raises(RuntimeError, match=r"notebook at batch 8 died \(exit code 3"):
        run_isolated(CaseRequest(("dying_engine",), "cpu", "notebook", 8, settings, None, None, False))
