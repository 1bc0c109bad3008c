"""The metadata file `backprop export` writes beside a model (``model.pt`` -> ``model.pt.json``):
where it lives, and the fields `import` and the checkpoint errors read back."""

from __future__ import annotations

import json

EXPORT_FORMAT = "backprop export 1"


def metadata_path(model_path: str) -> str:
    """The sidecar JSON beside an exported model: ``model.pt`` -> ``model.pt.json``."""
    return f"{model_path}.json"


def _read(path: str) -> dict | None:
    """The export metadata in the file ``path``; None when there is no such file or it is not
    export metadata (JSON with ``format`` EXPORT_FORMAT: a file another program wrote is not an
    error here)."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == EXPORT_FORMAT else None


def is_export_metadata(path: str) -> bool:
    """Whether ``path`` is a file holding export metadata (JSON with ``format`` EXPORT_FORMAT)."""
    return _read(path) is not None


def recorded(model_path: str, field: str) -> str | None:
    """A text field ("layers": the network's --layers text, "dataset", "data_dir") of the export
    metadata beside ``model_path``; None when there is no such file, it is not one or it lacks the
    field."""
    meta = _read(metadata_path(model_path))
    value = meta.get(field) if meta is not None else None
    return value if isinstance(value, str) else None
