"""The names every engine shares (engine_core/naming.py)."""

from __future__ import annotations

import pytest

import numpy_net
import torch_net
from engine_core.naming import ACTIVATION_NAMES


@pytest.mark.parametrize("module", [numpy_net, torch_net], ids=["numpy_net", "torch_net"])
def test_every_engine_builds_every_activation_the_core_names(module):
    assert tuple(module.ACTIVATIONS) == ACTIVATION_NAMES
