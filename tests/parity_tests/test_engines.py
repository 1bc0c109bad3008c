"""The harness's engine adapter (parity_tests/engines.py): an argument an engine's layer lacks is
reported as skipped by name."""

from __future__ import annotations

import pytest

OLD_CONV_ENGINE = '''"""numpy_net as an engine written before Conv2d took dilation, groups and padding_mode."""
import numpy_net
from numpy_net import *  # noqa: F403


class Conv2d(numpy_net.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, dtype="float32"):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias,
                         dtype=dtype)
'''


def test_an_argument_an_engine_lacks_is_reported_as_skipped_by_name(outside: pytest.Pytester,
                                                                    monkeypatch: pytest.MonkeyPatch):
    """An engine whose Conv2d predates dilation, groups and padding_mode: each of the three is
    reported as skipped with the class and the argument, and the property tests still pass on the
    cases that leave them at torch's defaults."""
    outside.makepyfile(old_conv_engine=OLD_CONV_ENGINE)
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "smoke")  # 5 examples a property: the skips are per argument, not drawn
    result = outside.runpytest_subprocess(
        "--pyargs", "parity_tests.test_layers", "-k", "conv2d", "--engine", "old_conv_engine", "-rs",
        "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, out[-3000:]
    for argument in ("dilation", "groups", "padding_mode"):
        assert f"old_conv_engine.Conv2d takes no '{argument}'" in out, out[-3000:]
    result.assert_outcomes(passed=3 + 3, skipped=3)  # three properties; of six arguments, three taken, three not
