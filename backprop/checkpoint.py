"""Checkpoints: one .npz of plain NumPy arrays plus JSON metadata, written atomically, and
validated in full when read, once, for every command that reads one.

Keys: ``param/<name>`` (the network's state dict under torch's dotted names, ``0.weight``,
``1.0.running_mean``; Linear weights (in, out)), ``optim/<buffer>/<name>`` (optimizer state)
and ``meta`` (UTF-8 JSON as uint8). The meta also holds every Dropout's mask generator state
(``dropout_rng``: layer path -> numpy bit generator state) and every batch norm's
``num_batches_tracked`` (layer path -> int), so that a resumed run draws the same masks and an
export carries torch's counter. Loaded with allow_pickle=False, so nothing in a file is ever
executed; any engine reads any engine's checkpoint. Files of versions 1 to 3 are converted on
read (backprop.legacy), and a config lacking a field added since version 4 (clip_grad_norm)
gets the value every run had before it (backprop.legacy.ADDED_FIELDS).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import zipfile
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

import engine_core
from engine_core.checks import check_num_batches_tracked
from engine_core.dropout_masks import DropoutMasks
from engine_core.layer_checks import check_rng_state
from engine_core.specs import find, join, parameter_shapes_of, paths_of, state_shapes

from .config import TrainConfig
from .fileio import atomic_write, missing_dirs
from .legacy import is_legacy_mlp, state_key
from .progress import METRIC_COLUMNS, Progress
from .sidecar import recorded

FORMAT = "backprop-checkpoint"
# 2: config.t_max and the lr column; 3: config.layers, dropout_rng, num_batches_tracked;
# 4: every network a tree (config.layers always; torch's keys for an MLP too, layers by path);
# fields added since then are optional in it (backprop.legacy.ADDED_FIELDS: config.clip_grad_norm)
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
CHECKPOINT_NAME = "checkpoint.npz"  # in a run directory


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line naming the file and the problem."""


@dataclass
class Checkpoint:
    """A validated checkpoint: ``config`` and ``progress`` parsed, arrays consistent with them.

    params: the network's state dict (torch's keys, Linear weights (in, out)); optimizer:
    {"step", "lr", "state": {buffer: {name: array}}}; meta: the raw metadata (engine, config,
    progress, rng...), as written, or as converted from an older version.
    """

    params: dict[str, np.ndarray]
    optimizer: dict[str, Any]
    meta: dict[str, Any]
    config: TrainConfig
    progress: Progress
    dropout_rng: dict[str, dict[str, Any]] = field(default_factory=dict)  # layer path -> generator state
    num_batches_tracked: dict[str, int] = field(default_factory=dict)  # batch norm layer path -> count

    @property
    def engine(self) -> str:
        """The NAME of the engine that wrote it."""
        return str(self.meta["engine"])

    @property
    def data_dir(self) -> str | None:
        """The data directory the run read its data from (absolute), None in files that predate it."""
        value = self.meta.get("data_dir")
        return value if isinstance(value, str) else None

    @property
    def blas_threads(self) -> int | None:
        """The GEMM thread count the run trained on, None in files that predate the record."""
        value = self.meta.get("blas_threads")
        return value if isinstance(value, int) else None

    @property
    def gradients(self) -> dict[str, Any] | None:
        """--track-gradients' state (checkpoint_meta), None when the run does not track gradients."""
        value = self.meta.get("gradients")
        return value if isinstance(value, dict) else None

    @property
    def engines(self) -> list[str]:
        """The engines that trained the run's finished epochs, in order, each named once
        (files that predate the record name only the writer)."""
        names = [row.get("engine") for row in self.progress.history]
        return list(dict.fromkeys(n for n in names if isinstance(n, str))) or [self.engine]


def model_shapes(config: TrainConfig) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """(every state-dict entry's shape, the trainable parameters' shapes) of config's network."""
    params = {join(path, name): shape for path, spec in config.network.walk()
              for name, shape in parameter_shapes_of(spec).items()}
    return state_shapes(config.network), params


def checkpoint_meta(config: TrainConfig, engine_name: str, progress: Progress, train_samples: int,
                    data_dir: str | None = None, dropout_rng: dict[str, dict[str, Any]] | None = None,
                    num_batches_tracked: dict[str, int] | None = None, blas_threads: int | None = None,
                    gradients: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata a run's checkpoint carries (save_checkpoint adds format, version, optimizer).

    ``data_dir``: where the run's data came from, stored absolute so that a resumed run or an
    evaluation finds it again from any working directory. ``dropout_rng`` (each Dropout's
    rng_state(), by layer path) and ``num_batches_tracked`` (by batch norm path; default 0 for
    each, and for dropout the generator's state fresh from its seed).
    ``blas_threads``: the GEMM thread count the run trains on (float32 results depend on it in
    their last bits, so a resumed session reuses it). ``gradients``: --track-gradients' state
    (GradientTracker.state(): the layers and the running sums of the epoch in progress), absent
    when the run does not track gradients.
    """
    meta: dict[str, Any] = {} if data_dir is None else {"data_dir": os.path.abspath(data_dir)}
    rng = dropout_rng or {}
    tracked = num_batches_tracked or {}
    meta["dropout_rng"] = {
        path: rng[path] if path in rng else DropoutMasks(find(config.network, path).args["seed"]).state()
        for path in paths_of(config.network, "dropout")}
    meta["num_batches_tracked"] = {path: int(tracked.get(path, 0))
                                   for path in paths_of(config.network, "batchnorm1d", "batchnorm2d")}
    return {
        **meta,
        "engine": engine_name,
        "config": config.to_json(),
        "progress": {k: v for k, v in asdict(progress).items() if k != "history"},
        # The batch order of epoch e is default_rng([seed, epoch]).permutation(n): this
        # (with progress.step) is the data RNG's whole state.
        "rng": {"kind": "numpy.default_rng([seed, epoch]).permutation", "seed": config.seed,
                "epoch": progress.epoch, "batches_done": progress.step, "train_samples": train_samples},
        "history": progress.history,
        **({} if blas_threads is None else {"blas_threads": int(blas_threads)}),
        **({} if gradients is None else {"gradients": gradients}),
    }


def save_checkpoint(path: str, params: dict[str, np.ndarray], optimizer: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write params, optimizer state and metadata to ``path`` atomically (see fileio.atomic_write)."""
    arrays = {f"param/{k}": np.asarray(v) for k, v in params.items()}
    for buffer, per_param in optimizer.get("state", {}).items():
        for name, value in per_param.items():
            arrays[f"optim/{buffer}/{name}"] = np.asarray(value)
    meta = {**meta, "format": FORMAT, "version": VERSION,
            "optimizer_step": int(optimizer.get("step", 0)), "optimizer_lr": float(optimizer.get("lr", 0.0))}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, allow_pickle=False, **arrays))


def checkpoint_path(path: str) -> str:
    """The checkpoint file ``path`` names: ``path`` itself, or ``path/checkpoint.npz`` when it is a
    run directory. Raises CheckpointError (one line naming ``path``) when it names nothing
    readable: missing (saying which part of it is missing), a directory without a checkpoint, or
    not a regular file."""
    if os.path.isdir(path):
        inside = os.path.join(path, CHECKPOINT_NAME)
        if os.path.isfile(inside):
            return inside
        try:
            runs = sorted(entry.path for entry in os.scandir(path)
                          if entry.is_dir() and os.path.isfile(os.path.join(entry.path, CHECKPOINT_NAME)))
        except OSError:
            runs = []
        found = f"; it holds run directories such as {', '.join(runs[-3:])}" if runs else ""
        if _run_config(os.path.join(path, "config.json")):
            found = ("; it holds a run's config.json: that run ended before its first checkpoint, so there is "
                     f"nothing to resume: start it again (in another --out, or delete this one first: rm -r -- "
                     f"{shlex.quote(path)})")
        raise CheckpointError(f"{path}: a directory without {CHECKPOINT_NAME} (give a run directory or a "
                              f"checkpoint file){found}")
    if not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            missing = (missing_dirs(parent) or [parent])[-1]  # the outermost missing one, or a file
            what = "is not a directory" if os.path.exists(missing) else "does not exist"
            raise CheckpointError(f"{path}: no such checkpoint file ({missing} {what})")
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not a regular file (a checkpoint is a .npz file)")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: not readable (permission denied)")
    return path


def load_checkpoint(path: str) -> Checkpoint:
    """Read ``path`` (a checkpoint file, or a run directory holding checkpoint.npz) and validate
    it in full: the file, every metadata field, and the arrays against the architecture and
    optimizer the metadata names.

    Raises CheckpointError, whose message is ``<path>: <reason>`` on one line, for anything
    unusable: a missing, corrupt, truncated, pickled or foreign file, a directory without a
    checkpoint; metadata missing a field or holding an unknown value; arrays that contradict the
    metadata.
    """
    path = checkpoint_path(path)
    arrays = _read_arrays(path)
    meta = _read_meta(path, arrays.pop("meta", None))
    try:
        meta, arrays = _upgrade(meta, arrays)
        config, progress = _check_meta(meta)
        params, state = _split_arrays(arrays)
        model, shapes = model_shapes(config)
        params = engine_core.check_model_state(model, params)
        for name, value in params.items():
            if value.dtype.name != config.dtype:
                raise ValueError(f"parameter {name!r} is {value.dtype.name}, but config.dtype is {config.dtype}")
        optimizer = {"step": meta["optimizer_step"], "lr": meta["optimizer_lr"], "state": state}
        hyper = {"momentum": config.momentum} if config.optimizer == "sgd" else {"amsgrad": False}
        optimizer = dict(engine_core.check_optimizer_state(config.optimizer, hyper, shapes, optimizer))
        if optimizer["step"] != progress.global_step:
            raise ValueError(f"optimizer step count {optimizer['step']} contradicts progress.global_step "
                             f"{progress.global_step}")
        dropout_rng, tracked = _check_layer_state(meta, config)
        _check_run_options(meta)
    except (ValueError, TypeError, OverflowError, RecursionError, KeyError) as error:
        # Any metadata the checks could not even interpret (a number beyond any float, nesting
        # too deep) is as much a bad checkpoint as a wrong value: one line, never a traceback.
        reason = f"metadata field {error}" if isinstance(error, KeyError) else _one_line(error)
        raise CheckpointError(f"{path}: {reason}") from None
    return Checkpoint(params=params, optimizer=optimizer, meta=meta, config=config, progress=progress,
                      dropout_rng=dropout_rng, num_batches_tracked=tracked)


def _upgrade(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A version 1-3 MLP's metadata and arrays with today's keys (backprop.legacy.state_key:
    ``fc{i}.weight`` -> ``{2i}.weight``, in the parameters, the optimizer state and the gradient
    tracker's layer names); its config is converted by TrainConfig.from_json. Anything else is
    returned as it is (and validated as usual)."""
    config = meta.get("config")
    if meta["version"] >= 4 or not isinstance(config, dict) or not is_legacy_mlp(config):
        return meta, arrays
    renamed: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        parts = key.split("/")
        new = "/".join([*parts[:-1], state_key(parts[-1])])
        if new in renamed or (new != key and new in arrays):
            raise ValueError(f"entry {key!r} and entry {new!r} name the same parameter (a version "
                             f"{meta['version']} MLP names it {key.split('/')[-1]!r})")
        renamed[new] = value
    meta = dict(meta)
    gradients = meta.get("gradients")
    if isinstance(gradients, dict) and isinstance(gradients.get("layers"), list):
        meta["gradients"] = {**gradients, "layers": [state_key(name) if isinstance(name, str) else name
                                                     for name in gradients["layers"]]}
    return meta, renamed


def _check_layer_state(meta: dict[str, Any], config: TrainConfig) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """dropout_rng and num_batches_tracked: one entry per Dropout / batch norm layer, keyed by its
    path, each a PCG64 generator state (engine_core check_rng_state) / an integer in [0, 2**63)
    (check_num_batches_tracked). Files before version 4 that describe an MLP have neither."""
    if meta["version"] < 4 and is_legacy_mlp(meta["config"]):
        for key in ("dropout_rng", "num_batches_tracked"):
            if key in meta:
                raise ValueError(f"metadata field {key!r}: an MLP has no such state (config.layers is null)")
        return {}, {}
    rng = _require(meta, "dropout_rng", dict, "an object of dropout layer path -> generator state")
    tracked = _require(meta, "num_batches_tracked", dict, "an object of batch norm layer path -> count")
    for key, value, kinds in (("dropout_rng", rng, ("dropout",)),
                              ("num_batches_tracked", tracked, ("batchnorm1d", "batchnorm2d"))):
        expected = paths_of(config.network, *kinds)
        if sorted(value) != sorted(expected):
            raise ValueError(f"metadata field {key!r}: keys {sorted(value)} do not match the layers "
                             f"{expected} of config.layers")
    # Each value checked for its structure and ranges (engine_core), naming the field, before
    # NumPy or torch sees it.
    states = {key: check_rng_state(f"dropout_rng[{key!r}]", state) for key, state in rng.items()}
    counts = {key: check_num_batches_tracked(f"num_batches_tracked[{key!r}]", count)
              for key, count in tracked.items()}
    return states, counts


def _check_run_options(meta: dict[str, Any]) -> None:
    """The optional blas_threads (an integer >= 1) and gradients ({"layers": [str], "steps": int
    >= 0, "sums": one [weight_grad_norm, delta_norm, update_ratio] row of numbers >= 0 per layer,
    "history" (optional): one [epoch, steps, such rows] per finished epoch})."""
    if "blas_threads" in meta:
        count = meta["blas_threads"]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 4096:
            raise ValueError(f"metadata field 'blas_threads': expected a thread count in 1..4096, got {count!r}")
    if "gradients" not in meta:
        return
    state = _require(meta, "gradients", dict, "an object of layers, steps and sums")
    layers, steps, sums = state.get("layers"), state.get("steps"), state.get("sums")
    if not isinstance(layers, list) or not layers or not all(isinstance(name, str) for name in layers):
        raise ValueError(f"gradients.layers: expected a list of weight names, got {layers!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"gradients.steps: expected an integer >= 0, got {steps!r}")
    if not isinstance(sums, list) or len(sums) != len(layers) or not all(
            isinstance(row, list) and len(row) == 3 and all(
                not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0 for v in row) for row in sums):
        raise ValueError(f"gradients.sums: expected {len(layers)} rows of 3 numbers >= 0 (one per layer)")
    history = state.get("history", [])
    if not isinstance(history, list):
        raise ValueError(f"gradients.history: expected a list of [epoch, steps, means], got {history!r:.60}")
    for i, entry in enumerate(history):
        ok = (isinstance(entry, list) and len(entry) == 3
              and all(not isinstance(v, bool) and isinstance(v, int) and v >= 1 for v in entry[:2])
              and isinstance(entry[2], list) and len(entry[2]) == len(layers) and all(
                  isinstance(row, list) and len(row) == 3 and all(
                      not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0 for v in row)
                  for row in entry[2]))
        if not ok:
            raise ValueError(f"gradients.history[{i}]: expected [epoch >= 1, steps >= 1, {len(layers)} rows of 3 "
                             "numbers >= 0]")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


# The first bytes of files that are often passed by mistake, and what they are.
_MAGIC = {b"\x89PNG": "a PNG image", b"\x1f\x8b": "a gzip file", b"{": "JSON text",
          b"\x00\x00\x08": "an IDX data file", b"%PDF": "a PDF document"}
_PICKLED = "refused: it holds pickled Python objects, and checkpoints hold plain numeric arrays only " \
           "(nothing in it was executed)"


def _sniff(path: str) -> None:
    """Refuse, by its first bytes, a file that is not a .npz (zip) archive, saying what it is."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read it ({error.strerror or error})") from None
    if head.startswith(b"PK"):
        return
    if head.startswith(b"\x80"):  # pickle protocol 2 and later
        raise CheckpointError(f"{path}: {_PICKLED}")
    if head.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"{path}: a bare .npy array, not a checkpoint (.npz)")
    kind = next((what for magic, what in _MAGIC.items() if head.startswith(magic)), None)
    found = f": it is {kind}" if kind else (": the file is empty" if not head else "")
    raise CheckpointError(f"{path}: not a checkpoint (a checkpoint is a .npz archive){found}")


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    _sniff(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path}: a bare .npy array, not a checkpoint (.npz)")
            return {key: npz[key] for key in npz.files}
    except CheckpointError:
        raise
    except ValueError as error:
        if "pickle" in str(error) or "Object arrays" in str(error):
            raise CheckpointError(f"{path}: {_PICKLED}") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({_one_line(error)})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(error).__name__}: {_one_line(error)})"
        ) from None
    except Exception as error:  # zlib.error and friends from a damaged member
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(error).__name__}: {_one_line(error)})") from None


def _run_config(path: str) -> bool:
    """Whether ``path`` is the config.json a run writes (TrainConfig.to_json plus its engine), not
    some other program's file of that name."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"engine", "dataset", "layers", "epochs"} <= data.keys()


def _torch_file(path: str) -> bool:
    """Whether ``path`` is a file torch.save wrote (a zip archive holding a data.pkl)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_meta(path: str, raw: np.ndarray | None) -> dict[str, Any]:
    if raw is None and _torch_file(path):
        # import reads the layers from export's metadata beside the file; without it they must be given.
        layers = "" if recorded(path, "layers") else " --layers TEXT"
        raise CheckpointError(f"{path}: a torch file (torch.save), not a backprop checkpoint; `backprop import "
                              f"{shlex.quote(path)}{layers} --out DIR` turns a torch.nn.Sequential state dict "
                              "into a run directory that every command takes"
                              + ("" if not layers else " (TEXT: its network, as train's --layers)"))
    if raw is None:
        raise CheckpointError(f"{path}: not a backprop checkpoint (no 'meta' entry)")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: 'meta' must be a 1-D uint8 array of JSON, got {raw.dtype} {raw.shape}")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as error:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise CheckpointError(f"{path}: not a backprop checkpoint (metadata format {found!r})")
    if meta.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path}: checkpoint version {meta.get('version')!r}, this program reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    return meta


def _split_arrays(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    params: dict[str, np.ndarray] = {}
    state: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        if value.dtype.kind != "f":
            raise TypeError(f"entry {key!r} has dtype {value.dtype}; expected floating point")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"entry {key!r} contains NaN or Inf")
        parts = key.split("/")
        if parts[0] == "param" and len(parts) == 2:
            params[parts[1]] = value
        elif parts[0] == "optim" and len(parts) == 3:
            state.setdefault(parts[1], {})[parts[2]] = value
        else:
            raise ValueError(f"unexpected entry {key!r}")
    return params, state


def _require(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in meta:
        raise ValueError(f"metadata field {key!r} missing")
    value = meta[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise TypeError(f"metadata field {key!r}: expected {what}, got {value!r}")
    if not isinstance(value, kind):
        raise TypeError(f"metadata field {key!r}: expected {what}, got {value!r}")
    return value


def _check_meta(meta: dict[str, Any]) -> tuple[TrainConfig, Progress]:
    """Parse and cross-check the metadata; ValueError/TypeError naming the field otherwise."""
    _require(meta, "engine", str, "the engine's name")
    if "data_dir" in meta:
        _require(meta, "data_dir", str, "a directory path")
    config_json = _require(meta, "config", dict, "an object")
    if meta["version"] == 1 and "t_max" not in config_json:
        # Version 1 had no t_max; its cosine period was the stored epochs.
        config_json = {**config_json, "t_max": config_json.get("epochs")}
    config = TrainConfig.from_json(config_json, legacy=meta["version"] < 4)
    step = _require(meta, "optimizer_step", int, "an integer")
    lr = _require(meta, "optimizer_lr", (int, float), "a number")
    try:
        lr_ok = math.isfinite(lr) and lr >= 0
    except OverflowError:  # an integer beyond any float
        lr_ok = False
    if step < 0:
        raise ValueError(f"metadata: optimizer_step must be >= 0, got {step}")
    if not lr_ok:
        raise ValueError("metadata: optimizer_lr must be a finite number >= 0")
    rng = _require(meta, "rng", dict, "an object")
    samples = rng.get("train_samples")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"rng.train_samples: expected a positive integer, got {samples!r}")
    progress = _check_progress(_require(meta, "progress", dict, "an object"), config, samples)
    history = _require(meta, "history", list, "a list of metric rows")
    for index, row in enumerate(history):
        _check_history_row(f"history[{index}]", row)
    if len(history) != progress.epoch:
        raise ValueError(f"history has {len(history)} rows but progress.epoch says {progress.epoch} epochs finished")
    progress.history = list(history)
    return config, progress


_PROGRESS_INTS = ("epoch", "step", "global_step", "correct", "seen")


def _check_progress(data: dict[str, Any], config: TrainConfig, train_samples: int) -> Progress:
    names = [f.name for f in fields(Progress) if f.name != "history"]
    for name in names:
        if name not in data:
            raise ValueError(f"progress.{name}: missing")
    for name in data:
        if name not in names:
            raise ValueError(f"progress.{name}: unknown field")
    for name in _PROGRESS_INTS:
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"progress.{name}: expected an integer >= 0, got {value!r}")
    for name in ("loss_sum", "seconds", "last_loss"):
        value = data[name]
        if value is None and name == "last_loss":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"progress.{name}: expected a finite number >= 0, got {value!r}")
    progress = Progress(**data)
    steps_per_epoch = -(-train_samples // config.batch_size)
    if progress.step > steps_per_epoch:
        raise ValueError(f"progress.step {progress.step} exceeds the {steps_per_epoch} batches of an epoch of "
                         f"{train_samples} samples at config.batch_size {config.batch_size}")
    if progress.epoch > config.epochs:
        raise ValueError(f"progress.epoch {progress.epoch} exceeds config.epochs {config.epochs}")
    if progress.correct > progress.seen or progress.seen > train_samples:
        raise ValueError(f"progress: {progress.correct} correct of {progress.seen} seen "
                         f"(of {train_samples} samples) is impossible")
    return progress


def _check_history_row(name: str, row: object) -> None:
    if not isinstance(row, dict):
        raise TypeError(f"{name}: expected an object of metrics, got {row!r}")
    for column in METRIC_COLUMNS:
        if column not in row:
            if column == "lr":
                continue  # version 1 rows have no lr
            raise ValueError(f"{name}.{column}: missing")
        value = row[column]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name}.{column}: expected a number, got {value!r}")
    if "engine" in row and not isinstance(row["engine"], str):
        raise TypeError(f"{name}.engine: expected an engine's name, got {row['engine']!r}")
