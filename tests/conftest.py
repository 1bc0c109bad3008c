"""Fixtures for the application's tests.

The hypothesis profiles (HYPOTHESIS_PROFILE=ci, thorough) are the parity harness's: importing
parity_tests.profile registers them and loads the one $HYPOTHESIS_PROFILE names (default ci).
"""

from __future__ import annotations

import base64

import pytest

import parity_tests.profile  # noqa: F401  (registers the profiles, loads $HYPOTHESIS_PROFILE, default ci)

from .datasets import write_dataset
from .helpers import finished_run

# pytester runs the harness as an outside author would (tests/parity_tests/).
pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def idle_machine(monkeypatch):
    """Every test sees an idle machine: `auto`'s thread count follows the load
    (backprop.threads.free_cores), which the suite's own workers raise; the tests of that rule
    set a load of their own."""
    from backprop import threads

    monkeypatch.setattr(threads, "current_load", lambda: 0.0)


# A 1x1 PNG, what figures are written as unless a test renders them (rendered_figures).
BLANK_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGP4DwABAQEAsTj2FAAAAABJRU5ErkJggg==")


@pytest.fixture(autouse=True)
def rendered_figures(request, monkeypatch):
    """Figures (curves.png, gradients.png, weights.png, ...) are built as the program builds them
    and written where it writes them, atomically, but as a 1x1 PNG: matplotlib's drawing takes
    most of a small run's time and is not what most tests test. A test marked `rendered` (the
    pictures' own, and one end-to-end run of every command) gets them drawn for real."""
    if request.node.get_closest_marker("rendered"):
        return
    from backprop import pictures, plots
    from backprop.fileio import atomic_write

    def save_figure(fig, path: str) -> None:
        atomic_write(path, lambda f: f.write(BLANK_PNG))

    monkeypatch.setattr(plots, "save_figure", save_figure)
    monkeypatch.setattr(pictures, "save_figure", save_figure)


@pytest.fixture
def no_pictures(monkeypatch):
    """`backprop evaluate` draws no confusion matrix, weights or mistakes (seconds of matplotlib
    each), for the tests about something else: tests/backprop/cli/test_evaluate.py tests them."""
    from backprop.cli import evaluate

    monkeypatch.setattr(evaluate, "plot_confusion", lambda *args, **kwargs: None)
    monkeypatch.setattr(evaluate, "write_pictures", lambda *args, **kwargs: [])


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
