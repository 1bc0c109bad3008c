"""Checkpoints: one .npz of plain NumPy arrays plus JSON metadata, written atomically.

Keys: ``param/<name>`` (weights (in, out)), ``optim/<buffer>/<name>`` (optimizer state) and
``meta`` (UTF-8 JSON as uint8). Loaded with allow_pickle=False, so nothing in a file is ever
executed; any engine reads any engine's checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass

import numpy as np

FORMAT = "backprop-checkpoint"
VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be used, with a message naming the file and the problem."""


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    optimizer: dict  # {"step", "lr", "state": {buffer: {name: array}}}
    meta: dict


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write) -> None:
    """Call write(file) on a temporary file beside ``path``, fsync it, then os.replace it in.

    A crash at any instant leaves either the old file or the new one, never a torn one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def save_checkpoint(path: str, params: dict[str, np.ndarray], optimizer: dict, meta: dict) -> None:
    arrays = {f"param/{k}": np.asarray(v) for k, v in params.items()}
    for buffer, per_param in optimizer.get("state", {}).items():
        for name, value in per_param.items():
            arrays[f"optim/{buffer}/{name}"] = np.asarray(value)
    meta = {**meta, "format": FORMAT, "version": VERSION,
            "optimizer_step": int(optimizer.get("step", 0)), "optimizer_lr": float(optimizer.get("lr", 0.0))}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path: str) -> Checkpoint:
    """Read and validate; every failure is a CheckpointError that names the file."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path}: a bare .npy array, not a checkpoint (.npz)")
            arrays = {key: npz[key] for key in npz.files}
    except CheckpointError:
        raise
    except ValueError as error:
        if "pickle" in str(error) or "Object arrays" in str(error):
            raise CheckpointError(
                f"{path}: refused: it holds pickled Python objects, and checkpoints hold plain "
                "numeric arrays only (nothing in it was executed)"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({error})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(error).__name__}: {error})"
        ) from None
    except Exception as error:  # zlib.error and friends from a damaged member
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(error).__name__}: {error})") from None

    if "meta" not in arrays:
        raise CheckpointError(f"{path}: not a backprop checkpoint (no 'meta' entry)")
    raw = arrays.pop("meta")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(
            f"{path}: 'meta' must be a 1-D uint8 array of JSON, got {raw.dtype} {raw.shape}"
        )
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise CheckpointError(f"{path}: not a backprop checkpoint (metadata format {found!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {meta.get('version')!r}, this program reads {VERSION}"
        )

    params: dict[str, np.ndarray] = {}
    state: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        if value.dtype.kind != "f":
            raise CheckpointError(
                f"{path}: entry {key!r} has dtype {value.dtype}; expected floating point"
            )
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{path}: entry {key!r} contains NaN or Inf")
        parts = key.split("/")
        if parts[0] == "param" and len(parts) == 2:
            params[parts[1]] = value
        elif parts[0] == "optim" and len(parts) == 3:
            state.setdefault(parts[1], {})[parts[2]] = value
        else:
            raise CheckpointError(f"{path}: unexpected entry {key!r}")
    _check_architecture(path, meta, params, state)
    optimizer = {"step": int(meta.get("optimizer_step", 0)), "lr": float(meta.get("optimizer_lr", 0.0)),
                 "state": state}
    return Checkpoint(params=params, optimizer=optimizer, meta=meta)


def _check_architecture(path: str, meta: dict, params: dict, state: dict) -> None:
    """The arrays must be exactly the network the metadata describes."""
    try:
        sizes = [int(s) for s in meta["config"]["sizes"]]
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: metadata lacks the architecture (config.sizes)") from None
    expected = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        expected[f"fc{i}.weight"] = (fan_in, fan_out)
        expected[f"fc{i}.bias"] = (fan_out,)
    for name, shape in expected.items():
        if name not in params:
            raise CheckpointError(f"{path}: parameter {name!r} missing for sizes {sizes}")
        if params[name].shape != shape:
            raise CheckpointError(
                f"{path}: parameter {name!r} has shape {params[name].shape}, sizes {sizes} need {shape}"
            )
    for name in params:
        if name not in expected:
            raise CheckpointError(f"{path}: parameter {name!r} does not belong to sizes {sizes}")
    for buffer, per_param in state.items():
        for name, shape in expected.items():
            if name not in per_param or per_param[name].shape != shape:
                raise CheckpointError(
                    f"{path}: optimizer buffer {buffer!r} for {name!r} missing or misshapen"
                )
