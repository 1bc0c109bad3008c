"""The installed versions of the packages the program reports (--version, and the one-line error
for a torchvision that does not load beside torch), read from their metadata: nothing is imported."""

from __future__ import annotations

from importlib import metadata


def installed_version(distribution: str) -> str:
    """``distribution``'s installed version ("2.14.1"), or "not installed"."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
