"""Files written before a network was one tree, converted on read.

Until checkpoint version 3, an MLP was stored as ``hidden`` widths and an ``activation``
(``layers`` null or absent) with the notebook's parameter keys ``fc{i}.weight`` / ``fc{i}.bias``
for its i-th Linear; a layer stack already had torch.nn.Sequential's keys. Today every network is
a tree with torch's keys: the MLP of sizes [784, *hidden, 10] is Sequential(Linear, activation,
..., Linear), whose i-th Linear sits at index 2i. Nothing else changed meaning, so a converted
file evaluates and resumes exactly as it did.

Fields added to the configuration since format 4 (ADDED_FIELDS) are filled in when a stored
config lacks them, with the value that does what every run did before they existed, as layer
arguments added since then are (engine_core.specs.Kind.added): no format change, and any other
missing field is still refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from engine_core.specs import mlp

from .architecture import CLASSES, PIXELS

_FC_KEY = re.compile(r"fc(\d+)\.(weight|bias)")

# TrainConfig fields added after checkpoint format 4 -> the value that means "as before".
ADDED_FIELDS: dict[str, Any] = {
    "clip_grad_norm": None,  # --clip-grad-norm (issue 22): no clipping
}


def is_legacy_mlp(config: dict[str, Any]) -> bool:
    """Whether a stored config describes its MLP by ``hidden`` and ``activation`` (no layers)."""
    return config.get("layers") is None and "hidden" in config


def network_fields(data: dict[str, Any], check_hidden: Callable[[str, object], None],
                   check_activation: Callable[[str, object], None]) -> dict[str, Any]:
    """A stored config with ``layers`` the root's children, whatever its age: an old MLP's
    ``hidden`` and ``activation`` (validated by the two checks, naming ``config.<field>``)
    become the layers of mlp([784, *hidden, 10], activation); an old layer stack's placeholder
    ``hidden`` ([], required empty) and ``activation`` are dropped; ``sizes`` (derived, written
    by old files) must agree with ``hidden``. A new config is returned as it is."""
    if "hidden" not in data and "activation" not in data and "sizes" not in data:
        return data
    out = dict(data)
    for name in ("hidden", "activation"):
        if name not in out:
            raise ValueError(f"config.{name}: missing")
    hidden, activation = out.pop("hidden"), out.pop("activation")
    check_hidden("config.hidden", hidden)
    check_activation("config.activation", activation)
    sizes = [PIXELS, *hidden, CLASSES]
    if "sizes" in out and out.pop("sizes") != sizes:
        raise ValueError(f"config.sizes: {data['sizes']} contradicts config.hidden {hidden} (expected {sizes})")
    if out.get("layers") is None:
        out["layers"] = [spec.to_json() for spec in mlp(sizes, activation).children]
    else:
        if hidden:
            raise ValueError(f"config.hidden: {hidden} contradicts config.layers (a layer stack has no hidden "
                             "widths; expected [])")
        if "sizes" in data:
            raise ValueError("config.sizes: an MLP's widths, but config.layers describes the network")
    return out


def state_key(key: str) -> str:
    """An old MLP's parameter key as today's: ``fc{i}.weight`` -> ``{2i}.weight`` (any other key
    unchanged)."""
    match = _FC_KEY.fullmatch(key)
    return f"{2 * int(match.group(1))}.{match.group(2)}" if match else key


def added_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A stored config with every ADDED_FIELDS entry it lacks set to that entry's value (the
    same dict when it lacks none); a field it has is left to the usual checks."""
    missing = {name: value for name, value in ADDED_FIELDS.items() if name not in data}
    return {**data, **missing} if missing else data
