"""The parity harness as a pytest plugin (registered through the ``pytest11`` entry point, so it
is active wherever this package is installed): hypothesis profiles and the ``--engine`` option.

    pytest --pyargs parity_tests --engine mypkg.my_engine       # from any directory
    pytest parity_tests --engine numpy_net --engine torch_net   # in the checkout (the default)

HYPOTHESIS_PROFILE=ci (default; derandomized, 45 examples a property) or thorough (1000).
Every test that takes the ``engine`` fixture runs once per ``--engine`` module, against
torch autograd (torch_net.autograd) as the oracle.
"""

from __future__ import annotations

import pytest

# The hypothesis profiles are registered and loaded by profile.py, which the parity properties
# import: this plugin is active in every pytest run of an environment that has the package, and
# must not change other projects' hypothesis settings (not even by registering a profile: "ci"
# is also the name of hypothesis's own profile for CI machines).


DEFAULT_ENGINES = ["numpy_net", "torch_net"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """--engine MODULE (repeatable): the engine modules the parity properties check."""
    parser.addoption(
        "--engine",
        action="append",
        default=None,
        metavar="MODULE",
        help="import path of an engine module to check against torch autograd (repeatable); "
        f"default: {' and '.join(DEFAULT_ENGINES)}",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Import every --engine module up front: one that cannot be imported, or lacks what the
    protocol requires, is a usage error naming it (exit status 4), not a test failure."""
    from .engines import load_engine

    for name in config.getoption("engine") or []:
        try:
            load_engine(name)
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
