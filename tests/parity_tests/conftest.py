"""The harness's tests run it as an outside author does: from a directory outside the checkout."""

from __future__ import annotations

import pytest

from tests.parity_tests.modules import MYMOD, MYMOD_OFF


@pytest.fixture
def outside(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A temporary directory outside the checkout holding mymod.py and mymod_off.py, on PYTHONPATH."""
    pytester.makepyfile(mymod=MYMOD, mymod_off=MYMOD_OFF)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "ci")
    pytester.syspathinsert()
    return pytester
