"""The harness as a pytest plugin (parity_tests/plugin.py), run as an outside author runs it: --engine,
usage errors naming the module, the installed harness on another module, and other projects left
alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from parity_tests import plugin


def test_the_engine_option_runs_engine_tests_once_per_module(outside: pytest.Pytester):
    outside.makepyfile(test_probe="def test_probe(engine):\n    assert engine.MLP([3, 2]).forward\n")
    result = outside.runpytest_inprocess("-v", "-p", "no:cacheprovider", "--engine", "mymod", "--engine", "numpy_net")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_probe?mymod? PASSED*", "*test_probe?numpy_net? PASSED*"])


def test_without_the_option_the_projects_engines_are_tested(outside: pytest.Pytester):
    outside.makepyfile(test_probe="def test_probe(engine):\n    pass\n")
    result = outside.runpytest_inprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_probe?numpy_net? PASSED*", "*test_probe?torch_net? PASSED*"])


@pytest.mark.parametrize("name, words", [("no_such_module_xyz", "No module named"),
                                          ("json", "has no MLP, SoftmaxCrossEntropy, SGD")])
def test_a_module_that_is_no_engine_is_a_usage_error_naming_it(outside: pytest.Pytester, name, words):
    outside.makepyfile(test_probe="def test_probe(engine):\n    pass\n")
    result = outside.runpytest_inprocess("-p", "no:cacheprovider", "--engine", name)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--engine {name}: *{words}*"])


def test_the_installed_harness_collects_every_property_for_the_named_engine_only(outside: pytest.Pytester):
    result = outside.runpytest_subprocess("--pyargs", "parity_tests", "--engine", "mymod", "-p", "no:cacheprovider",
                                          "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert len(ids) >= 30 and all("[mymod" in line or "[" not in line or "mymod" in line for line in ids)
    assert not any("numpy_net" in line or "torch_net" in line for line in ids)  # only the named engine


@pytest.mark.slow(reason="the whole harness in a fresh process (about 140 s on 2 cores); make test collects it for "
                  "the module (test_the_installed_harness_collects_every_property_for_the_named_engine_only), runs "
                  "a test on it (test_the_engine_option_runs_engine_tests_once_per_module) and runs every property "
                  "on numpy_net itself")
def test_the_installed_harness_passes_a_module_that_re_exports_numpy_net(outside: pytest.Pytester,
                                                                         monkeypatch: pytest.MonkeyPatch):
    # Every property runs, on 5 examples each (the smoke profile): the suite tests numpy_net itself in full.
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "smoke")
    result = outside.runpytest_subprocess("--pyargs", "parity_tests", "--engine", "mymod", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert result.ret == pytest.ExitCode.OK and "failed" not in outcomes, result.stdout.str()[-3000:]
    assert outcomes["passed"] >= 30


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
    result = outside.runpytest_inprocess("-p", "no:cacheprovider", "--engine", "importboom")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--engine importboom: RuntimeError: boom at import*"])


def test_no_profile_prints_the_reproduce_failure_blob():
    from hypothesis import settings

    for name in ("ci", "thorough", "debug", "smoke", "ci100"):
        assert settings.get_profile(name).print_blob is False, name


def test_the_reproduce_section_names_the_command_that_runs_the_test_alone(tmp_path: Path):
    def probe(engine, problem):
        pass

    probe.is_hypothesis_test = True  # type: ignore[attr-defined]
    item = SimpleNamespace(module=SimpleNamespace(__name__="parity_tests.test_gradients"), name="test_x[my_engine]",
                           callspec=SimpleNamespace(params={"engine": "my_engine", "kwargs": {"lr": -1.0}}), obj=probe,
                           config=SimpleNamespace(invocation_params=SimpleNamespace(dir=tmp_path)))
    text = plugin.reproduce_text(item)  # type: ignore[arg-type]
    assert f"from {tmp_path}:" in text
    assert "pytest --pyargs 'parity_tests.test_gradients::test_x[my_engine]' --engine my_engine" in text
    assert "HYPOTHESIS_PROFILE=debug" in text and "derandomized" in text
    assert "Its parameters: kwargs={'lr': -1.0}" in text  # the short traceback style shows no arguments


def test_one_failing_property_prints_a_short_report_that_says_how_to_reproduce_it(tmp_path: Path):
    """The installed harness's finite-difference property (the quickest to fail) on the notebook
    engine, 5 examples (smoke), from a directory outside the checkout."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyargs",
         "parity_tests.test_finite_differences", "--engine", "parity_tests.fixtures.notebook_engine"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "HYPOTHESIS_PROFILE": "smoke"})
    out = result.stdout
    assert result.returncode == 1, out[-3000:] + result.stderr[-2000:]
    lines = out.splitlines()
    assert len(lines) <= 60, f"{len(lines)} lines:\n{out}"
    # The useful parts: which derivative, the two values, and the falsifying example.
    assert "d loss / d 0.bias[0]: finite difference" in out and "Failing test case:" in out and "NetSpec(" in out, out
    # Not the long traceback style, nor advice an outside author cannot follow.
    assert not any(line.startswith(">") for line in lines) and "reproduce_failure(" not in out, out
    assert "- Reproduce -" in out, out
    command = ("HYPOTHESIS_PROFILE=smoke pytest --pyargs 'parity_tests.test_finite_differences::"
               "test_central_differences_match_the_analytic_gradient[parity_tests.fixtures.notebook_engine]' "
               "--engine parity_tests.fixtures.notebook_engine")
    assert command in out, out


def _report_of(tbstyle: str, module: str) -> tuple[SimpleNamespace, list[str]]:
    """The plugin's makereport wrapper run on a failed call of a test in ``module`` under --tb
    ``tbstyle``: (the report, the styles the item's repr_failure was asked for)."""
    styles: list[str] = []
    config = SimpleNamespace(option=SimpleNamespace(tbstyle=tbstyle),
                             invocation_params=SimpleNamespace(dir=Path.cwd()), stash=pytest.Stash())

    def repr_failure(excinfo):
        styles.append(config.option.tbstyle)
        return "short repr"

    item = SimpleNamespace(module=SimpleNamespace(__name__=module), name="test_x[numpy]", config=config,
                           callspec=SimpleNamespace(params={"engine": "numpy"}), obj=lambda: None,
                           repr_failure=repr_failure)
    report = SimpleNamespace(failed=True, longrepr="the default repr", sections=[], user_properties=[])
    hook = plugin.pytest_runtest_makereport(item, SimpleNamespace(when="call", excinfo=object()))  # type: ignore[arg-type]
    next(hook)
    with pytest.raises(StopIteration) as done:
        hook.send(report)
    assert done.value.value is report and config.option.tbstyle == tbstyle  # the option is put back
    return report, styles


def test_the_harness_tests_are_reported_short_unless_the_user_chose_a_traceback_style():
    report, styles = _report_of("auto", "parity_tests.test_gradients")
    assert styles == ["short"] and report.longrepr == "short repr"
    assert [title for title, _ in report.sections] == ["Reproduce"]
    for chosen in ("long", "line", "native"):
        report, styles = _report_of(chosen, "parity_tests.test_gradients")
        assert styles == [] and report.longrepr == "the default repr" and report.sections, chosen
    # Another project's test (the plugin is active wherever the package is installed) is left alone.
    report, styles = _report_of("auto", "tests.test_mine")
    assert styles == [] and report.longrepr == "the default repr" and report.sections == []


LAX_ENGINE = """
import numpy_net
from numpy_net import *  # noqa: F403


def MLP(*args, **kwargs):
    net = numpy_net.MLP(*args, **kwargs)

    def load_state_dict(state):
        for key in net.state_dict():
            state[key]  # a KeyError for a missing key; nothing else is checked, nothing loaded

    net.load_state_dict = load_state_dict
    return net


class SGD(numpy_net.SGD):
    def __init__(self, net, lr=0.01, **kwargs):
        super().__init__(net, lr=abs(lr), **kwargs)  # a negative lr accepted without a word
"""

HALF_TANH = """
import numpy_net
from numpy_net import *  # noqa: F403


class Tanh(numpy_net.Tanh):
    def backward(self, delta, *args, **kwargs):
        return super().backward(delta, *args, **kwargs) * 0.5
"""


def test_failures_of_the_protocol_say_what_the_protocol_asks_and_a_summary_names_the_failing_layers(
        outside: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """What a from-scratch engine trips over, said in the failure itself: a refusal torch.optim
    makes and the engine does not (with torch's words), a state dict accepted or refused with the
    wrong error (with what was wrong with it); and after the failures, the layers that fail on
    their own, which other failing properties build on."""
    outside.makepyfile(lax_engine=LAX_ENGINE, half_tanh=HALF_TANH)
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "smoke")  # 5 examples: the Tanh fails on the first
    result = outside.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pyargs", "parity_tests.test_state_dict", "parity_tests.test_optimizers",
        "parity_tests.test_layers", "--engine", "lax_engine", "--engine", "half_tanh",
        "-k", "(lax_engine and (bad_state_dict or sgd_rejects)) or (half_tanh and tanh and oracle)")
    out = result.stdout.str()
    assert "lax_engine: SGD(lr=-1.0) was accepted; torch.optim refuses it with ValueError('Invalid learning rate: " \
        "-1.0')" in out, out[-3000:]
    assert "lax_engine: MLP([5, 3, 2]).load_state_dict of a state dict with the key 2.bias missing raised " \
        "KeyError: '2.bias'; the protocol asks for a ValueError or TypeError naming 2.bias" in out, out[-3000:]
    assert "with 0.weight of shape (3, 5) where (5, 3) is expected was accepted" in out, out[-3000:]
    assert "Explanation:" not in out  # hypothesis's explain phase lists the harness's own lines
    summary = out.index("parity_tests: half_tanh: the layers that differ from torch on their own (test_layers): Tanh")
    assert out.index("short test summary info") < summary < out.rindex(" failed")  # last, above the count line


def test_the_summary_reads_failures_from_the_reports_as_xdists_controller_receives_them():
    """Under pytest-xdist the summary is printed by the controller, which has the reports and not
    the items: the failures travel in user_properties, tuples arriving as lists (checked by hand
    with -n 2: the line prints; this test spares the suite two more worker processes)."""
    log = plugin._FailureLog()
    for properties in ([(plugin._FAILURE_PROPERTY, ["eng", "tanh"])], [(plugin._FAILURE_PROPERTY, ("eng", None))],
                       [(plugin._FAILURE_PROPERTY, ["eng", None])], [("other", 1)]):
        log.pytest_runtest_logreport(SimpleNamespace(user_properties=properties))  # type: ignore[arg-type]
    assert set(log.by_engine) == {"eng"}
    assert log.by_engine["eng"].layers == {"tanh"} and log.by_engine["eng"].others == 2

