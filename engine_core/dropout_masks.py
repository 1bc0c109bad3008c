"""Dropout's random source, shared by every engine so that the same seed draws the same masks:
NumPy's PCG64 generator, one per Dropout layer, whose state a checkpoint saves and restores."""

from __future__ import annotations

from typing import Any

import numpy as np

from .layer_checks import check_rng_state


class DropoutMasks:
    """Dropout's random source: one ``np.random.default_rng(seed)`` per layer, one draw per
    train-mode forward, ``keep = rng.random(shape) >= p`` (float64 uniforms, before any cast):
    every engine holding the same seed draws the same masks.

    ``state()`` is the bit generator's state, a JSON-ready dict ({"bit_generator": "PCG64",
    "state": {"state": int, "inc": int}, "has_uint32": int, "uinteger": int}); ``set_state``
    restores it, so a resumed run draws exactly the masks the interrupted one would have.
    """

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
        self.rng = np.random.default_rng(int(seed))
        self._uniform = np.empty(0)
        self._keep = np.empty(0, bool)

    def keep(self, shape: tuple[int, ...], p: float) -> np.ndarray:
        """The boolean keep-mask for one forward (valid until the next draw; buffers are reused)."""
        if self._uniform.shape != shape:
            self._uniform, self._keep = np.empty(shape), np.empty(shape, bool)
        self.rng.random(out=self._uniform)
        return np.greater_equal(self._uniform, p, out=self._keep)

    def state(self) -> dict[str, Any]:
        """A copy of the generator's state (JSON-ready)."""
        return dict(self.rng.bit_generator.state)

    def set_state(self, layer: str, state: object) -> None:
        """Restore a state() (any engine's). Raises ValueError naming the layer and the field
        (check_rng_state; a wrong type too) if it is not one; all or nothing: a refused state
        leaves the generator as it was."""
        try:
            checked = check_rng_state(f"{layer}: rng state", state)
        except TypeError as error:
            raise ValueError(str(error)) from None
        self.rng.bit_generator.state = checked
