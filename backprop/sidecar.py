"""The metadata file `backprop export` writes beside a model (``model.pt`` -> ``model.pt.json``):
where it lives, and the fields `import` and the checkpoint errors read back."""

from __future__ import annotations

import json

EXPORT_FORMAT = "backprop export 1"


def metadata_path(model_path: str) -> str:
    """The sidecar JSON beside an exported model: ``model.pt`` -> ``model.pt.json``."""
    return f"{model_path}.json"


def is_export_metadata(path: str) -> bool:
    """Whether ``path`` is a file holding export metadata (JSON with ``format`` EXPORT_FORMAT)."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == EXPORT_FORMAT


def recorded(model_path: str, field: str) -> str | None:
    """A text field ("layers": the network's --layers text, "dataset") of the export metadata beside
    ``model_path``; None when there is no such file, it is not one (a file another program wrote is
    not an error here) or it lacks the field."""
    try:
        with open(metadata_path(model_path), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    value = meta.get(field) if isinstance(meta, dict) and meta.get("format") == EXPORT_FORMAT else None
    return value if isinstance(value, str) else None
