"""Initial parameters: the very arrays numpy_net draws, converted to tensors.

Drawing once in NumPy (and only converting here) is what makes the same seed give
bit-identical starting points in both engines.
"""

from __future__ import annotations

from numpy_net.init import INITS, initial_parameters

__all__ = ["INITS", "initial_parameters"]
