"""The parity harness as a pytest plugin (registered through the ``pytest11`` entry point, so it
is active wherever this package is installed): hypothesis profiles and the ``--engine`` option.

    pytest --pyargs parity_tests --engine mypkg.my_engine       # from any directory
    pytest --pyargs parity_tests --engine numpy                 # the CLI's names: numpy, torch, autograd
    pytest parity_tests --engine numpy_net --engine torch_net   # in the checkout (the default)

HYPOTHESIS_PROFILE=ci (default; derandomized, 45 examples a property) or thorough (1000).
Every test that takes the ``engine`` fixture runs once per ``--engine`` engine, against
torch autograd (torch_net.autograd) as the oracle. --engine takes what `backprop --engine` takes,
found by the same rule (engine_core.loading: sys.path, then the current directory).

A failure of one of the harness's own tests is reported short: pytest's short traceback style
(unless --tb was given), and a "Reproduce" section with the command that runs that test alone
(its tests live in site-packages, so hypothesis's @reproduce_failure advice is of no use there).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Generator
from dataclasses import dataclass, field

import pytest

# The hypothesis profiles are registered and loaded by profile.py, which the parity properties
# import: this plugin is active in every pytest run of an environment that has the package, and
# must not change other projects' hypothesis settings (not even by registering a profile: "ci"
# is also the name of hypothesis's own profile for CI machines).


DEFAULT_ENGINES = ["numpy_net", "torch_net"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """--engine ENGINE (repeatable): the engines the parity properties check."""
    from engine_core.loading import ENGINES

    parser.addoption(
        "--engine",
        action="append",
        default=None,
        metavar="ENGINE",
        help=f"an engine to check against torch autograd (repeatable): {', '.join(ENGINES)} (as in "
        "`backprop --engine`) or the import path of an engine module, found on sys.path or in the current "
        f"directory; default: {' and '.join(DEFAULT_ENGINES)}",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Import every --engine module up front: one that cannot be found or imported, or lacks what
    the protocol requires, is a usage error naming it (exit status 4), not a test failure."""
    from engine_core.loading import EngineNameError, EngineNotFoundError

    from .engines import load_engine

    for name in config.getoption("engine") or []:
        try:
            load_engine(name)
        except (EngineNameError, EngineNotFoundError) as error:  # their message says where it looked
            raise pytest.UsageError(f"--engine {name}: {error}") from None
        except Exception as error:  # any failure while importing a user's module is a usage error
            raise pytest.UsageError(f"--engine {name}: {type(error).__name__}: {error}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that takes this plugin's ``engine`` fixture over the --engine
    modules (a project's own fixture named ``engine`` overrides it and is left alone)."""
    definitions = metafunc._arg2fixturedefs.get("engine", ())  # pytest's resolved fixtures
    if definitions and definitions[-1].func is _engine:
        names = metafunc.config.getoption("engine") or DEFAULT_ENGINES
        metafunc.parametrize("engine", names, indirect=True, ids=names, scope="session")


def _engine(request: pytest.FixtureRequest):
    """The engine module named by --engine, wrapped in parity_tests.engines.Engine."""
    from .engines import load_engine

    return load_engine(request.param)


engine = pytest.fixture(scope="session", name="engine")(_engine)


def _is_harness_test(item: pytest.Item) -> bool:
    """Whether ``item`` is one of this package's own tests (not a project's test using the fixture)."""
    module = getattr(item, "module", None)
    return getattr(module, "__name__", "").startswith(f"{__package__}.")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failing harness test: its traceback in pytest's short style unless --tb chose one (the
    long style prints the comparison helpers' source and arrays, hundreds of lines), and a
    "Reproduce" section saying how to run that test again, alone."""
    report = yield
    if report.failed and call.when == "call" and call.excinfo is not None and _is_harness_test(item):
        option = item.config.option
        if getattr(option, "tbstyle", "auto") == "auto":
            option.tbstyle = "short"
            try:
                report.longrepr = item.repr_failure(call.excinfo)
            finally:
                option.tbstyle = "auto"
        report.sections.append(("Reproduce", reproduce_text(item)))
        report.user_properties.append((_FAILURE_PROPERTY, _failure_of(item)))
    return report


@dataclass
class _Failures:
    """One engine's failed harness tests: the layer kinds test_layers failed, and how many others."""

    layers: set[str] = field(default_factory=set)
    others: int = 0


# A failed harness test travels to the summary in its report's user_properties: under pytest-xdist
# the reports reach the controller, which prints the summary, and the items stay in the workers.
_FAILURE_PROPERTY = "parity_tests_failure"


def _failure_of(item: pytest.Item) -> tuple[str, str | None]:
    """(engine, layer kind) of a failed harness test: the kind when it is one of test_layers'
    per-layer properties, else None."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    module = getattr(getattr(item, "module", None), "__name__", "")
    kind = params.get("kind") if module.endswith(".test_layers") else None
    return str(params.get("engine", "")), kind if isinstance(kind, str) else None


class _FailureLog:
    """Every failed harness test of the run, by engine, read from the reports as they arrive."""

    def __init__(self) -> None:
        self.by_engine: dict[str, _Failures] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == _FAILURE_PROPERTY and isinstance(value, (tuple, list)):  # xdist sends tuples as lists
                engine, kind = str(value[0]), value[1]
                failures = self.by_engine.setdefault(engine, _Failures())
                if isinstance(kind, str):
                    failures.layers.add(kind)
                else:
                    failures.others += 1


_FAILURES = pytest.StashKey[_FailureLog]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the run's failure log (in xdist's controller and in each worker; the controller's
    sees every report)."""
    log = _FailureLog()
    session.config.stash[_FAILURES] = log
    session.config.pluginmanager.register(log, "parity_tests_failures")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None]:
    """Last, after pytest's short test summary (this wrapper runs outside pytest's own): for each
    engine, the layers that fail on their own (test_layers), the first thing to fix, since the
    network, optimizer and trajectory properties that failed too build networks of those layers (a
    wrong Tanh backward fails an SGD trajectory as well)."""
    from engine_core.specs import KINDS

    result = yield
    log = terminalreporter.config.stash.get(_FAILURES, None)
    for engine, failed in sorted(log.by_engine.items() if log is not None else ()):
        if not failed.layers:
            continue
        names = ", ".join(sorted(KINDS[kind].class_name if kind in KINDS else kind for kind in failed.layers))
        then = (f"; {failed.others} other failing test{'s' if failed.others != 1 else ''} (networks, optimizers, "
                "training) may fail only through them: fix these layers first" if failed.others else "")
        terminalreporter.write_line(f"parity_tests: {engine or 'the engine'}: the layers that differ from torch on "
                                    f"their own (test_layers): {names}{then}")
    return result


def reproduce_text(item: pytest.Item) -> str:
    """How an outside author runs a failed harness test alone, from where they ran it."""
    module = getattr(item, "module", None)
    node = f"{getattr(module, '__name__', __package__)}::{item.name}"
    callspec = getattr(item, "callspec", None)
    engine = callspec.params.get("engine") if callspec is not None else None
    profile = os.environ.get("HYPOTHESIS_PROFILE")
    command = " ".join([
        *([f"HYPOTHESIS_PROFILE={shlex.quote(profile)}"] if profile and profile != "ci" else []),
        "pytest --pyargs", shlex.quote(node), *(["--engine", shlex.quote(str(engine))] if engine else [])])
    lines = [f"Run this test alone, from {item.config.invocation_params.dir}:", f"    {command}"]
    # The short traceback style shows no arguments: name the test's parameters (its id may not).
    params = {key: value for key, value in (callspec.params.items() if callspec is not None else ())
              if key != "engine"}
    if params:
        lines.append("Its parameters: " + ", ".join(f"{key}={_short_repr(value)}" for key, value in params.items()))
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        from hypothesis import settings

        # No database: derandomized (ci and the profiles made from it), the same examples every run.
        if getattr(settings.default, "database", None) is None:
            lines.append(f"The {profile or 'ci'} profile is derandomized: that run tries the same examples and fails "
                         "on the example shown above again.")
        else:
            lines.append("hypothesis saved the failing example in .hypothesis/ in that directory and tries it "
                         "first when run from there again.")
        lines.append("HYPOTHESIS_PROFILE=debug prints every example tried. (The test is the harness's: "
                     "there is no test of yours to put hypothesis's @reproduce_failure on.)")
    return "\n".join(lines)


def _short_repr(value: object) -> str:
    """repr(value) cut to one short line (a parameter of the test, for the Reproduce section)."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = 120
    return getattr(value, "__qualname__", None) or shortener.repr(value)
