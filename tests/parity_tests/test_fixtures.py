"""The harness rejects the engines in parity_tests/fixtures/ (each a known bug), with reports a person
can act on: the property, the layer, the quantity and hypothesis's smallest failing case.

Two runs of the installed harness, each one process from a directory outside the checkout: a
quick one in `make test` (the property that catches each bug, its first failing example reported
unshrunk) and the full one in `make thorough` (marked slow: every property of each fixture's
layer at 100 examples, the smallest failing cases and the count of passed and failed tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from engine_core import specs
from tests.parity_tests.modules import MYMOD_OFF

NOTEBOOK = "parity_tests.fixtures.notebook_engine"
FIXTURES = "parity_tests.fixtures."
SLOW = pytest.mark.slow(reason="the rejection fixtures at 100 examples each, shrunk (about 200 s on 2 cores); "
                        "make test runs test_the_harness_rejects_each_fixture_engine_naming_what_differs")


def _shared_run(tmp_path_factory: pytest.TempPathFactory, name: str, run) -> str:
    """``run(folder)``'s output, run once per test session: under pytest-xdist the first worker to
    need it runs it and leaves its output in the session's shared temporary directory for the
    others (filelock, xdist's documented way)."""
    from filelock import FileLock

    session = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker's basetemp is a folder of the session's
        session = session.parent
    shared = session / f"{name}.txt"
    with FileLock(f"{shared}.lock"):
        if not shared.is_file():
            shared.write_text(run(tmp_path_factory.mktemp("outside")))
        return shared.read_text()


PROPERTIES = ("parity_tests.test_layers", "parity_tests.test_attention", "parity_tests.test_gradients",
              "parity_tests.test_optimizers")


def _harness(where, engines: list[str], selection: str, profile: str, *options: str) -> str:
    """``pytest --pyargs PROPERTIES`` on ``engines`` (-k ``selection``) from the folder ``where`` (on
    PYTHONPATH, holding mymod_off.py), under the hypothesis ``profile``; its output. It must fail."""
    (where / "mymod_off.py").write_text(MYMOD_OFF)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *options, "--pyargs", *PROPERTIES,
         *[arg for engine in engines for arg in ("--engine", engine)], "-k", selection],
        cwd=where, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(where), "HYPOTHESIS_PROFILE": profile})
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


# -- the quick run: the property that catches each bug -------------------------------------------------
# hypothesis's ci profile at 100 examples without its shrink phase: each failure is reported as it
# was first drawn (shrinking it is most of the full run's time), still naming the property, the layer
# and the quantity.
QUICK_PROFILE = """from hypothesis import HealthCheck, Phase, settings

settings.register_profile("quick-rejections", derandomize=True, database=None, deadline=None, max_examples=100,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                          phases=[Phase.explicit, Phase.generate, Phase.target])
"""
ORACLE = "test_every_layer_matches_the_oracle_forward_backward_and_state"
# A batch norm normalises by the batch's statistics in train mode, and in eval mode without running ones.
# (Which one the first failing example is depends on hypothesis's derandomized seed, which changes with
# the property's source.)
BATCH_STATISTICS = r"(\(train|track_running_stats=False\) \(eval)"
# Each fixture engine: the -k selection of the property that catches it, and what its report must
# hold (regular expressions): the layer or network and the quantity that differs.
QUICK = {
    "mymod_off": ("test_gradients and mymod_off", [r"grads\['\d+\.bias'\] differs", r"NetSpec\("]),
    NOTEBOOK: ("(test_logits_loss_deltas_and_gradients_equal_autograds or test_sgd_trajectories) and notebook_engine",
               [r"grads\['0\.bias'\] differs", r"NetSpec\(", "first step out of tolerance: ", r"SGDSpec\("]),
    FIXTURES + "conv_stride_engine": (f"{ORACLE} and conv_stride_engine-conv2d",
                                      [r"Conv2d\([^\n]*stride=\(?[2-9][^\n]*\): dL/dx differs"]),
    FIXTURES + "same_padding_engine": (f"{ORACLE} and same_padding_engine-conv2d",
                                       [r"Conv2d\([^\n]*padding='same'[^\n]*\): (output|dL/dx) differs"]),
    FIXTURES + "count_include_pad_engine": (
        f"{ORACLE} and count_include_pad_engine-avgpool2d",
        [r"AvgPool2d\([^\n]*count_include_pad=False[^\n]*\): (output|dL/dx) differs"]),
    FIXTURES + "batchnorm_engine": (f"{ORACLE} and (batchnorm_engine-batchnorm1d or batchnorm_engine-batchnorm2d)",
                                    # batch statistics: in train mode, or in eval without running ones
                                    [rf"BatchNorm1d\([^\n]*{BATCH_STATISTICS}, float\d\d\): dL/dx differs",
                                     rf"BatchNorm2d\([^\n]*{BATCH_STATISTICS}, float\d\d\): dL/dx differs"]),
    FIXTURES + "lstm_forget_bias_engine": (f"{ORACLE} and lstm_forget_bias_engine-lstm",
                                           [r"LSTM\([^\n]*bias=True[^\n]*\): output differs"]),
    FIXTURES + "lstm_cell_gradient_engine": (f"{ORACLE} and lstm_cell_gradient_engine-lstm",
                                             [r"LSTM\([^\n]*\): dL/dx differs"]),
    FIXTURES + "layernorm_engine": (f"{ORACLE} and layernorm_engine-layernorm",
                                    [r"LayerNorm\([^\n]*\): dL/dx differs"]),
    FIXTURES + "causal_leak_engine": ("test_masked_self_attention and causal_leak_engine-multiheadattention",
                                      [r"MultiheadAttention\([^\n]*with masks [^\n]*: dL/dx differs"]),
}


@pytest.fixture(scope="module")
def quick_rejections(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report]:
    """The quick run of the harness (one process, once per session) on every engine of QUICK;
    engine -> Report."""
    def run(where) -> str:
        (where / "quick_rejections.py").write_text(QUICK_PROFILE)
        selection = " or ".join(f"({expression})" for expression, _ in QUICK.values())
        return _harness(where, list(QUICK), selection, "quick-rejections", "-p", "quick_rejections")

    return _reports(_shared_run(tmp_path_factory, "harness_quick_rejections", run), QUICK)


@pytest.mark.parametrize("engine", list(QUICK), ids=lambda engine: engine.removeprefix(FIXTURES))
def test_the_harness_rejects_each_fixture_engine_naming_what_differs(quick_rejections: dict[str, Report], engine):
    """Every fixture engine fails the property that catches its bug, and the report names the
    layer (or the network) and the quantity that differs, with the failing case drawn."""
    report = quick_rejections[engine]
    assert report.outcomes["failed"] and not report.outcomes["skipped"], (report.outcomes, report.out[-3000:])
    for expected in QUICK[engine][1]:
        assert re.search(expected, report.out), (expected, report.out[-3000:])


# -- the full run: every property of each fixture's layer, the smallest failing cases ------------------
def _optional(*kinds: str) -> int:
    """How many optional arguments the catalog gives these kinds: one passing
    test_every_argument_is_taken_with_torchs_default each, for an engine that takes them all."""
    return sum(default is not specs.REQUIRED for kind in kinds for default in specs.KINDS[kind].defaults.values())


# Each rejection fixture with the properties it is run on (a -k expression over the test ids, which
# hold "[<engine>-<kind>...]"): one harness process runs them all (a process each would spend most of
# its time importing torch and collecting the suite), as an outside author runs the installed harness.
REJECTED = {
    "mymod_off": "test_gradients and mymod_off",
    NOTEBOOK: "(test_logits_loss_deltas_and_gradients_equal_autograds or test_sgd_trajectories) and notebook_engine",
    FIXTURES + "conv_stride_engine": "conv_stride_engine-conv2d",
    FIXTURES + "same_padding_engine": "same_padding_engine-conv2d",
    FIXTURES + "count_include_pad_engine": "count_include_pad_engine-avgpool2d",
    FIXTURES + "batchnorm_engine": "batchnorm_engine-batchnorm1d or batchnorm_engine-batchnorm2d",
    FIXTURES + "lstm_forget_bias_engine": "lstm_forget_bias_engine-lstm",
    # Only the oracle comparison (finite differences reject it too, in twice the time).
    FIXTURES + "lstm_cell_gradient_engine": "oracle and lstm_cell_gradient_engine-lstm",
    FIXTURES + "layernorm_engine": "layernorm_engine-layernorm",
    FIXTURES + "causal_leak_engine": "test_masked_self_attention and causal_leak_engine-multiheadattention",
}


class Report:
    """One engine's part of the shared harness run: its failure reports and summary lines
    (``out``) and how many of its tests passed, failed or were skipped (``outcomes``)."""

    def __init__(self, out: str, outcomes: dict[str, int]) -> None:
        self.out, self.outcomes = out, outcomes

    def assert_outcomes(self, failed: int = 0, passed: int = 0) -> None:
        assert self.outcomes == {"failed": failed, "passed": passed, "skipped": 0}, (self.outcomes, self.out[-3000:])


@pytest.fixture(scope="module")
def rejections(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report]:
    """The full run of the harness (one process, once per session) on every fixture engine of
    REJECTED with its selection, at 100 examples a property (the ci100 profile); engine -> Report."""
    def run(where) -> str:
        selection = " or ".join(f"({expression})" for expression in REJECTED.values())
        return _harness(where, list(REJECTED), selection, "ci100")

    return _reports(_shared_run(tmp_path_factory, "harness_rejections", run), REJECTED)


def _reports(stdout: str, engines) -> dict[str, Report]:
    """A run's output cut into one Report per engine (of REJECTED or QUICK)."""
    # Failure reports start with "___ test_name[params] ___" (one "_" each side for a long name); the
    # short summary (-rA) has a PASSED or FAILED line per test.
    parts = re.split(r"^_+ (test_\S+) _+$", stdout, flags=re.MULTILINE)
    sections = list(zip(parts[1::2], parts[2::2]))
    summary = [line for line in stdout.splitlines() if line.startswith(("PASSED ", "FAILED ", "SKIPPED "))]
    reports = {}
    for engine in engines:
        mine = (f"[{engine}-", f"[{engine}]")
        text = "".join(body for name, body in sections if any(m in name for m in mine))
        lines = [line for line in summary if any(m in line for m in mine)]
        counts = {word.lower(): sum(line.startswith(word + " ") for line in lines)
                  for word in ("PASSED", "FAILED", "SKIPPED")}
        reports[engine] = Report(text + "\n".join(lines), counts)
    return reports


def _rejected(rejections: dict[str, Report], engine: str) -> tuple[Report, str]:
    """The engine's part of the shared run: it must fail, the oracle comparison among the failures."""
    report = rejections[engine]
    assert report.outcomes["failed"], report.out[-3000:]
    assert "test_every_layer_matches_the_oracle_forward_backward_and_state" in report.out, report.out[-3000:]
    return report, report.out


@SLOW
def test_the_harness_rejects_a_last_bias_gradient_off_by_a_tenth_of_a_percent(rejections: dict[str, Report]):
    report = rejections["mymod_off"]
    out = report.out
    assert report.outcomes["failed"] and re.search(r"grads\['\d+\.bias'\] differs", out) and "NetSpec(" in out, \
        out[-3000:]


@SLOW
def test_the_harness_rejects_the_notebook_engine_naming_the_bias_gradient(rejections: dict[str, Report]):
    out = rejections[NOTEBOOK].out
    # Which property, which parameter, expected vs got, and the smallest network that shows it.
    assert "test_logits_loss_deltas_and_gradients_equal_autograds" in out
    assert "grads['0.bias'] differs" in out and "expected" in out and "got" in out
    assert "NetSpec(sizes=(1, " in out and "Batch(" in out


@SLOW
def test_the_harness_reports_the_first_step_a_trajectory_left_tolerance(rejections: dict[str, Report]):
    out = rejections[NOTEBOOK].out
    assert "FAILED ::test_sgd_trajectories" in out or re.search(r"FAILED \S*test_sgd_trajectories", out), out[-3000:]
    assert "first step out of tolerance: " in out and "SGDSpec(" in out, out[-3000:]


@SLOW
def test_the_harness_rejects_a_convolution_whose_backward_ignores_the_stride(rejections: dict[str, Report]):
    """parity_tests.fixtures.conv_stride_engine: col2im as if the stride were 1. The report names
    the layer with its stride, the quantity, and hypothesis's smallest failing LayerCase."""
    result, out = _rejected(rejections, FIXTURES + "conv_stride_engine")
    assert "Conv2d(in_channels=1, out_channels=1, kernel_size=1, stride=2" in out, out[-3000:]
    assert "dL/dx differs" in out and "expected" in out and "got" in out, out[-3000:]
    assert "case=LayerCase(spec=Conv2d(" in out, out[-3000:]
    # Failed: oracle and finite differences. Passed: nothing is mutated, and every optional argument is
    # taken with torch's default.
    optional = _optional("conv2d")
    result.assert_outcomes(failed=2, passed=1 + optional)


@SLOW
def test_the_harness_rejects_a_batch_norm_whose_backward_drops_the_batch_means_term(rejections: dict[str, Report]):
    """parity_tests.fixtures.batchnorm_engine: train-mode dL/dx without -sum(dy), as if the batch
    mean were a constant. The report names the layer, the quantity and hypothesis's smallest
    failing LayerCase: a batch of two in one channel. ("-k batchnorm" alone would select every
    test, the engine's name holding the word.)"""
    result, out = _rejected(rejections, FIXTURES + "batchnorm_engine")
    assert ("BatchNorm1d(num_features=1, eps=1e-05, momentum=0.1, affine=True, "
            "track_running_stats=True) (train, float32): dL/dx differs" in out), out[-3000:]
    assert ("BatchNorm2d(num_features=1, eps=1e-05, momentum=0.1, affine=True, "
            "track_running_stats=True) (train, float32): dL/dx differs" in out), out[-3000:]
    assert "expected" in out and "got" in out, out[-3000:]
    assert ("case=LayerCase(spec=BatchNorm1d(num_features=1, eps=1e-05, momentum=0.1, affine=True, "
            "track_running_stats=True), input_shape=(2, 1)" in out)
    # Failed: oracle and finite differences, 1d and 2d. Passed: nothing is mutated (1d, 2d), and every
    # optional argument is taken with torch's default.
    optional = _optional("batchnorm1d", "batchnorm2d")
    result.assert_outcomes(failed=4, passed=2 + optional)


@SLOW
def test_the_harness_rejects_a_convolution_whose_same_padding_puts_the_odd_row_on_top(rejections: dict[str, Report]):
    """parity_tests.fixtures.same_padding_engine: padding="same" with an even kernel pads one row
    more at the top and one column more on the left, where torch pads the bottom and the right.
    The report names the layer with padding='same', the quantity, and hypothesis's smallest
    failing LayerCase: one channel, an even kernel. Forward and backward agree with each other,
    so only the comparison with the oracle fails."""
    result, out = _rejected(rejections, FIXTURES + "same_padding_engine")
    assert re.search(r"Conv2d\(in_channels=1, out_channels=1, kernel_size=(2|\(\d, \d\)), stride=1, padding='same'",
                     out), out[-3000:]
    assert re.search(r"padding='same'.*\): (dL/dx|output) differs", out) and "expected" in out and "got" in out, \
        out[-3000:]
    assert "case=LayerCase(spec=Conv2d(" in out, out[-3000:]
    # Failed: the oracle comparison. Passed: finite differences, nothing is mutated, and every optional
    # argument is taken with torch's default.
    optional = _optional("conv2d")
    result.assert_outcomes(failed=1, passed=2 + optional)


@SLOW
def test_the_harness_rejects_an_average_pool_that_ignores_count_include_pad_false(rejections: dict[str, Report]):
    """parity_tests.fixtures.count_include_pad_engine: AvgPool2d(count_include_pad=False) divides
    by the whole window, padding included. The report names the layer with the argument, the
    quantity (the output, or dL/dx where the shrunk input is all zeros) and hypothesis's smallest
    failing LayerCase: a padded window. Forward and backward use the same divisor, so only the
    comparison with the oracle fails."""
    result, out = _rejected(rejections, FIXTURES + "count_include_pad_engine")
    assert re.search(r"AvgPool2d\(kernel_size=(\d+|\(\d+, \d+\)), stride=\S+, padding=(1|\(\d, \d\)), ceil_mode=\w+, "
                     r"count_include_pad=False, divisor_override=None\) \(\w+, float\d\d\): (output|dL/dx) differs",
                     out) and "expected" in out and "got" in out, out[-3000:]
    assert "case=LayerCase(spec=AvgPool2d(" in out, out[-3000:]
    # Failed: the oracle comparison. Passed: finite differences, nothing is mutated, and every optional
    # argument is taken with torch's default.
    optional = _optional("avgpool2d")
    result.assert_outcomes(failed=1, passed=2 + optional)


def _lstm_cases(out: str) -> list[dict[str, int | bool]]:
    """Every smallest failing LayerCase of an LSTM in a report: hidden_size, num_layers, bias and
    T, the sequence length (the input shape's first or, with batch_first, second dimension)."""
    found = re.findall(r"case=LayerCase\(spec=LSTM\(input_size=\d+, hidden_size=(\d+), num_layers=(\d+), "
                       r"bias=(True|False), batch_first=(True|False)\), input_shape=\((\d+), (\d+), \d+\)", out)
    assert found, out[-3000:]
    return [{"hidden_size": int(hidden), "num_layers": int(layers), "bias": bias == "True",
             "steps": int(second if batch_first == "True" else first)}
            for hidden, layers, bias, batch_first, first, second in found]


@SLOW
def test_the_harness_rejects_an_lstm_whose_forget_gate_takes_the_output_gates_bias(rejections: dict[str, Report]):
    """parity_tests.fixtures.lstm_forget_bias_engine: numpy-ml#42, f = sigmoid(... + b_o). The
    catalog draws every bias at random (all-zero or equal biases would hide it), so the oracle
    comparison sees the output differ and finite differences see the forget block's gradient
    belong to a bias the forward never reads. The report names the layer, the output and the
    bias, and hypothesis's smallest failing LayerCase: an LSTM with biases, one layer of one unit,
    at least two time steps (f multiplies c_{t-1}, which is 0 at the first). ("-k engine-lstm": the
    engine's name holds "lstm", which would select every test.)"""
    result, out = _rejected(rejections, FIXTURES + "lstm_forget_bias_engine")
    assert re.search(r"LSTM\(input_size=\d+, hidden_size=\d+, num_layers=\d+, bias=True, batch_first=(True|False)\) "
                     r"\(train, float(32|64)\): output differs", out), out[-3000:]
    assert re.search(r"d L / d 0\.bias_(ih|hh)_l0\[[^]]+\]: finite difference", out), out[-3000:]
    for case in _lstm_cases(out):
        assert case["bias"] and case["hidden_size"] == case["num_layers"] == 1 and case["steps"] >= 2, case
    # Failed: oracle and finite differences. Passed: nothing is mutated, and every optional argument is
    # taken with torch's default.
    result.assert_outcomes(failed=2, passed=1 + _optional("lstm"))


@SLOW
def test_the_harness_rejects_an_lstm_whose_backward_drops_the_cell_gradient_to_the_previous_step(
        rejections: dict[str, Report]):
    """parity_tests.fixtures.lstm_cell_gradient_engine: CaptainE/RNN-LSTM-in-numpy#1, the backward
    through time carries no dL/dc to step t - 1. The report names the layer, dL/dx and every
    parameter gradient that differs, and hypothesis's smallest failing LayerCase, which needs a
    second time step (with one, nothing is carried). Only the oracle comparison runs (finite
    differences reject it too, in twice the time)."""
    result, out = _rejected(rejections, FIXTURES + "lstm_cell_gradient_engine")
    assert re.search(r"LSTM\(input_size=\d+, hidden_size=\d+, num_layers=\d+, bias=(True|False), "
                     r"batch_first=(True|False)\) \(train, float(32|64)\): dL/dx differs", out), out[-3000:]
    assert "expected" in out and "got" in out, out[-3000:]
    # ... and the parameters the lost carry reaches (the biases' gradients sum every step's gates).
    assert re.search(r"differing: dL/dx, grads\['0\.(bias|weight)_(ih|hh)_l0'\]", out), out[-3000:]
    for case in _lstm_cases(out):
        assert case["steps"] >= 2, case
    result.assert_outcomes(failed=1)


@SLOW
def test_the_harness_rejects_a_layer_norm_without_the_variance_term_of_its_input_gradient(
        rejections: dict[str, Report]):
    """parity_tests.fixtures.layernorm_engine: dL/dx without -xhat mean(g xhat), the path
    through the row variance (tenstorrent/tt-metal#53215). The report names the layer, dL/dx and
    hypothesis's smallest failing LayerCase: one row of two values (with one, xhat is 0 and the
    term vanishes). ("-k engine-layernorm": the engine's name holds "layernorm".)"""
    result, out = _rejected(rejections, FIXTURES + "layernorm_engine")
    assert re.search(r"LayerNorm\(normalized_shape=\S+, eps=1e-05, elementwise_affine=True, bias=\w+\) "
                     r"\(train, float(32|64)\): dL/dx differs", out), out[-3000:]
    assert "expected" in out and "got" in out, out[-3000:]
    assert re.search(r"d L / d x\[[^]]+\]: finite difference", out), out[-3000:]
    assert "case=LayerCase(spec=LayerNorm(normalized_shape=2, " in out and "input_shape=(2,)" in out, out[-3000:]
    # Failed: oracle and finite differences. Passed: nothing is mutated, and every optional argument is
    # taken with torch's default.
    result.assert_outcomes(failed=2, passed=1 + _optional("layernorm"))


@SLOW
def test_the_harness_rejects_an_attention_whose_causal_mask_leaks_gradient_to_future_keys(
        rejections: dict[str, Report]):
    """parity_tests.fixtures.causal_leak_engine: the masks applied in the forward, not in the
    softmax's backward. The report names the layer, the masks, dL/dx and hypothesis's smallest
    failing case: one head of one dimension, two time steps (with one, nothing is in the future)."""
    report = rejections[FIXTURES + "causal_leak_engine"]
    out = report.out
    assert re.search(r"MultiheadAttention\(embed_dim=1, num_heads=1, dropout=0.0, bias=\w+, batch_first=\w+, "
                     r"seed=\d+\) \(float(32|64)\) "
                     r"with masks \[[^]]+\]: dL/dx differs", out), out[-3000:]
    assert "case=LayerCase(spec=MultiheadAttention(embed_dim=1, num_heads=1" in out and "masks=" in out, out[-3000:]
    assert re.search(r"input_shape=\((2, 1, 1|1, 2, 1)\)", out), out[-3000:]
    report.assert_outcomes(failed=1)
