"""The parity suite as a harness for any engine: the --engine option, a run from outside the
checkout against a third-party module, and rejection reports a person can act on."""

from __future__ import annotations

import re

import numpy as np
import pytest

from engine_core import specs
from parity_tests.compare import Mismatch, compare_passes, run_pass
from parity_tests.engines import load_engine, oracle
from parity_tests.strategies import Batch, NetSpec

pytest_plugins = ["pytester"]

NOTEBOOK = "parity_tests.fixtures.notebook_engine"

MYMOD = "from numpy_net import *  # noqa: F403\n"
# A copy of numpy_net whose last bias gradient is 0.1% too large.
MYMOD_OFF = '''
import numpy_net
from numpy_net import *  # noqa: F403


def MLP(*args, **kwargs):
    net = numpy_net.MLP(*args, **kwargs)
    exact = net.backward

    def backward(delta, input_grad=True):
        dx = exact(delta, input_grad=input_grad)
        last = [key for key in net.grads() if key.endswith(".bias")][-1]
        net.grads()[last][...] *= 1.001
        return dx

    net.backward = backward
    return net
'''


@pytest.fixture
def outside(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A temporary directory outside the checkout holding mymod.py and mymod_off.py, on PYTHONPATH."""
    pytester.makepyfile(mymod=MYMOD, mymod_off=MYMOD_OFF)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "ci")
    pytester.syspathinsert()
    return pytester


def test_the_engine_option_runs_engine_tests_once_per_module(outside: pytest.Pytester):
    outside.makepyfile(test_probe="def test_probe(engine):\n    assert engine.MLP([3, 2]).forward\n")
    result = outside.runpytest_subprocess("-v", "-p", "no:cacheprovider", "--engine", "mymod", "--engine", "numpy_net")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_probe?mymod? PASSED*", "*test_probe?numpy_net? PASSED*"])


def test_without_the_option_the_projects_engines_are_tested(outside: pytest.Pytester):
    outside.makepyfile(test_probe="def test_probe(engine):\n    pass\n")
    result = outside.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_probe?numpy_net? PASSED*", "*test_probe?torch_net? PASSED*"])


@pytest.mark.parametrize("name, words", [("no_such_module_xyz", "No module named"),
                                          ("json", "has no MLP, SoftmaxCrossEntropy, SGD")])
def test_a_module_that_is_no_engine_is_a_usage_error_naming_it(outside: pytest.Pytester, name, words):
    outside.makepyfile(test_probe="def test_probe(engine):\n    pass\n")
    result = outside.runpytest_subprocess("-p", "no:cacheprovider", "--engine", name)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--engine {name}: *{words}*"])


def test_the_installed_harness_passes_a_module_that_re_exports_numpy_net(outside: pytest.Pytester,
                                                                         monkeypatch: pytest.MonkeyPatch):
    # Every property runs, on 5 examples each (the smoke profile): the suite tests numpy_net itself in full.
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "smoke")
    result = outside.runpytest_subprocess("--pyargs", "parity_tests", "--engine", "mymod", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert result.ret == pytest.ExitCode.OK and "failed" not in outcomes, result.stdout.str()[-3000:]
    assert outcomes["passed"] >= 30
    result = outside.runpytest_subprocess("--pyargs", "parity_tests", "--engine", "mymod", "-p", "no:cacheprovider",
                                          "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids and all("[mymod" in line or "[" not in line or "mymod" in line for line in ids)
    assert not any("numpy_net" in line or "torch_net" in line for line in ids)  # only the named engine


def test_the_harness_rejects_a_last_bias_gradient_off_by_a_tenth_of_a_percent(rejections: dict[str, Report]):
    report = rejections["mymod_off"]
    out = report.out
    assert report.outcomes["failed"] and re.search(r"grads\['\d+\.bias'\] differs", out) and "NetSpec(" in out, \
        out[-3000:]


def test_the_harness_rejects_the_notebook_engine_naming_the_bias_gradient(rejections: dict[str, Report]):
    out = rejections[NOTEBOOK].out
    # Which property, which parameter, expected vs got, and the smallest network that shows it.
    assert "test_logits_loss_deltas_and_gradients_equal_autograds" in out
    assert "grads['0.bias'] differs" in out and "expected" in out and "got" in out
    assert "NetSpec(sizes=(1, " in out and "Batch(" in out


def test_the_harness_reports_the_first_step_a_trajectory_left_tolerance(rejections: dict[str, Report]):
    out = rejections[NOTEBOOK].out
    assert "FAILED ::test_sgd_trajectories" in out or re.search(r"FAILED \S*test_sgd_trajectories", out), out[-3000:]
    assert "first step out of tolerance: " in out and "SGDSpec(" in out, out[-3000:]


def test_the_harness_finds_the_activation_derivative_taken_from_the_next_layer():
    """With the bias bug out of the way (batch of one), the deltas give the second bug away."""
    spec = NetSpec(sizes=(3, 4, 4, 2), activation="tanh", init="xavier_normal", seed=1, dtype="float64")
    batch = Batch(x=np.array([[0.5, -1.0, 2.0]]), y=np.array([1]))
    ref_engine, engine = oracle(), load_engine(NOTEBOOK)
    ref_net = spec.build(ref_engine)
    ref = run_pass(ref_engine, ref_net, spec, batch)
    pre = [ref_engine.to_numpy(z) for z in ref_net.pre_activations()]
    with pytest.raises(Mismatch, match=r"deltas\[0\] \(dL/dz of the Linear or Conv2d number 0\) differs"):
        compare_passes(run_pass(engine, spec.build(engine), spec, batch), ref, spec, pre, NOTEBOOK)


def _optional(*kinds: str) -> int:
    """How many optional arguments the catalog gives these kinds: one passing
    test_every_argument_is_taken_with_torchs_default each, for an engine that takes them all."""
    return sum(default is not specs.REQUIRED for kind in kinds for default in specs.KINDS[kind].defaults.values())


FIXTURES = "parity_tests.fixtures."
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
    """The harness (pytest --pyargs parity_tests...) run once per test session, in a fresh process
    from a directory outside the checkout, on every fixture engine of REJECTED with its selection;
    engine -> Report. Under pytest-xdist the first worker to need it runs it and leaves its output
    in the session's shared temporary directory for the others (filelock, xdist's documented way)."""
    import os

    from filelock import FileLock

    session = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker's basetemp is a folder of the session's
        session = session.parent
    shared = session / "harness_rejections.txt"
    with FileLock(f"{shared}.lock"):
        if not shared.is_file():
            shared.write_text(_run_rejections(tmp_path_factory))
        return _reports(shared.read_text())


def _run_rejections(tmp_path_factory: pytest.TempPathFactory) -> str:
    import os
    import subprocess
    import sys

    where = tmp_path_factory.mktemp("outside")
    (where / "mymod_off.py").write_text(MYMOD_OFF)
    engines = [arg for engine in REJECTED for arg in ("--engine", engine)]
    selection = " or ".join(f"({expression})" for expression in REJECTED.values())
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--pyargs", "parity_tests.test_layers",
         "parity_tests.test_attention", "parity_tests.test_gradients", "parity_tests.test_optimizers", *engines,
         "-k", selection], cwd=where, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(where), "HYPOTHESIS_PROFILE": "ci100"})
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _reports(stdout: str) -> dict[str, Report]:
    """The run's output cut into one Report per engine of REJECTED."""
    # Failure reports start with "___ test_name[params] ___" (one "_" each side for a long name); the
    # short summary (-rA) has a PASSED or FAILED line per test.
    parts = re.split(r"^_+ (test_\S+) _+$", stdout, flags=re.MULTILINE)
    sections = list(zip(parts[1::2], parts[2::2]))
    summary = [line for line in stdout.splitlines() if line.startswith(("PASSED ", "FAILED ", "SKIPPED "))]
    reports = {}
    for engine in REJECTED:
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


def test_the_plugin_leaves_other_projects_alone(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Installed, the plugin is active in every pytest run: a project's own `engine` fixture and
    its hypothesis settings must stay as they are."""
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef engine():\n    return 'sqlite://'\n")
    pytester.makepyfile(test_other=(
        "from hypothesis import settings\n\n"
        "def test_db(engine):\n    assert engine == 'sqlite://'\n\n"
        "from hypothesis import HealthCheck\n\n"
        "def test_settings():\n    assert HealthCheck.data_too_large not in settings.default.suppress_health_check\n"))
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_db PASSED*"])


def test_an_engine_module_that_fails_on_import_is_a_usage_error(outside: pytest.Pytester):
    outside.makepyfile(importboom="raise RuntimeError('boom at import')\n",
                       test_probe="def test_probe(engine):\n    pass\n")
    result = outside.runpytest_subprocess("-p", "no:cacheprovider", "--engine", "importboom")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--engine importboom: RuntimeError: boom at import*"])


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


OLD_CONV_ENGINE = '''"""numpy_net as an engine written before Conv2d took dilation, groups and padding_mode."""
import numpy_net
from numpy_net import *  # noqa: F403


class Conv2d(numpy_net.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, dtype="float32"):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias,
                         dtype=dtype)
'''


def test_an_argument_an_engine_lacks_is_reported_as_skipped_by_name(outside: pytest.Pytester):
    """An engine whose Conv2d predates dilation, groups and padding_mode: each of the three is
    reported as skipped with the class and the argument, and the property tests still pass on the
    cases that leave them at torch's defaults."""
    outside.makepyfile(old_conv_engine=OLD_CONV_ENGINE)
    result = outside.runpytest_subprocess(
        "--pyargs", "parity_tests.test_layers", "-k", "conv2d", "--engine", "old_conv_engine", "-rs",
        "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, out[-3000:]
    for argument in ("dilation", "groups", "padding_mode"):
        assert f"old_conv_engine.Conv2d takes no '{argument}'" in out, out[-3000:]
    result.assert_outcomes(passed=3 + 3, skipped=3)  # three properties; of six arguments, three taken, three not


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
