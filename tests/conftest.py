"""Fixtures for the application's tests.

The hypothesis profiles (HYPOTHESIS_PROFILE=ci, thorough) are the parity harness's: importing
parity_tests.profile registers them and loads the one $HYPOTHESIS_PROFILE names (default ci).
"""

from __future__ import annotations

import pytest

import parity_tests.profile  # noqa: F401  (registers the profiles, loads $HYPOTHESIS_PROFILE, default ci)

from .datasets import write_dataset
from .helpers import finished_run


@pytest.fixture(autouse=True)
def idle_machine(monkeypatch):
    """Every test sees an idle machine: `auto`'s thread count follows the load average
    (backprop.threads.free_cores), which the suite's own workers raise; the tests of that rule
    set a load of their own."""
    from backprop import threads

    monkeypatch.setattr(threads, "load_average", lambda: 0.0)


@pytest.fixture
def data_root(tmp_path):
    """A --data-dir holding a small Fashion-MNIST-format dataset (256 train, 64 test) as IDX files."""
    write_dataset(str(tmp_path / "data"))
    return str(tmp_path / "data")


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[str, str]:
    """(data dir, run dir) of one finished 1-epoch SMALL_RUN, trained once per test process and
    shared: copy the run (helpers.copy_run) before changing it."""
    return finished_run(str(tmp_path_factory.mktemp("finished")))
