"""Suite set-up: hypothesis profiles and the engines under test.

HYPOTHESIS_PROFILE=ci (default; derandomized, bounded) or thorough (many more examples).
``pytest parity_tests --engine mypkg.my_engine`` (repeatable) tests any module that speaks
the engine protocol (see parity_tests/engines.py); the default is numpy_net and torch_net.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Verbosity, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=1000,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("debug", parent=settings.get_profile("ci"), verbosity=Verbosity.verbose)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEFAULT_ENGINES = ["numpy_net", "torch_net"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engine",
        action="append",
        default=None,
        metavar="MODULE",
        help="import path of an engine module to test against autograd (repeatable); "
        f"default: {' and '.join(DEFAULT_ENGINES)}",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        names = metafunc.config.getoption("engine") or DEFAULT_ENGINES
        metafunc.parametrize("engine", names, indirect=True, ids=names, scope="session")


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest):
    from .engines import load_engine

    return load_engine(request.param)


@pytest.fixture
def data_root(tmp_path):
    """A --data-dir holding a small Fashion-MNIST-format dataset (256 train, 64 test)."""
    from .datasets import write_dataset

    write_dataset(str(tmp_path / "data"))
    return str(tmp_path / "data")
