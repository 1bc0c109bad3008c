"""Fixtures for the application's tests.

The hypothesis profiles (HYPOTHESIS_PROFILE=ci, thorough) are the parity harness's, registered by
its pytest plugin (parity_tests.plugin, active through the pytest11 entry point wherever the
package is installed); a checkout that is not installed gets them by importing that module.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.errors import InvalidArgument

from .datasets import write_dataset

try:
    settings.get_profile("ci")
except InvalidArgument:
    import parity_tests.plugin  # noqa: F401  (registers and loads the profiles as a side effect)


@pytest.fixture
def data_root(tmp_path):
    """A --data-dir holding a small Fashion-MNIST-format dataset (256 train, 64 test) as IDX files."""
    write_dataset(str(tmp_path / "data"))
    return str(tmp_path / "data")
