"""Export a checkpoint as a plain torch.nn state dict, and import one back.

Any network (a tree, engine_core.specs) becomes the torch.nn module tree of the same classes and
arguments (torch.nn.Sequential nested as the tree is; Dropout without its seed: torch draws its
own masks); the state-dict keys are the same dotted paths (``0.weight``, ``1.0.running_mean``,
plus torch's ``num_batches_tracked`` per batch norm), Linear weights transposed to torch's
(out, in). This module is the one place that converts between the engines' layout and torch's.

torch.nn.RNN, LSTM and GRU return a tuple, (output, h_n) or (output, (h_n, c_n)), which no layer
after them in a Sequential takes, and torch.nn has no module keeping the last time step: an
exported recurrent network uses the small classes of TORCH_CLASSES instead (a subclass of
torch's keeping ``output``, whose state-dict keys are torch's own, weight_ih_l0, ...; and
LastStep), defined from the very text that the printed code defines them with; so do the layers
torch.nn lacks (a vision transformer's Patches, PositionalEmbedding and SequenceMean).
nn.TransformerEncoderLayer is torch's own: its state keys are its parts' (self_attn.in_proj_weight,
linear1.weight, norm1.weight, ...).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from engine_core.checks import check_model_state
from engine_core.specs import REQUIRED, LayerSpec, find, join, state_shapes

from .architecture import PIXELS, SEQUENCE_SHAPE, format_layers, input_shape
from .checkpoint import Checkpoint
from .fileio import atomic_write, atomic_write_text
from .sidecar import EXPORT_FORMAT, is_export_metadata, metadata_path


class TorchImportError(ValueError):
    """A .pt file that cannot be imported; the message is one line naming the file and why.
    ``mismatch``: the file is a state dict, but of another network (keys or shapes)."""

    def __init__(self, message: str, mismatch: bool = False) -> None:
        super().__init__(message)
        self.mismatch = mismatch


# The classes an exported network needs beyond torch.nn's, by class name: Python source that runs
# with ``nn`` (torch.nn) in scope; rebuild_code prints the ones a network uses, torch_namespace runs them.
_KEEP_OUTPUT = '''class {name}(nn.{name}):
    """torch.nn.{name} returning only its first return value, output (the top layer's h_t for
    every step t), so that it fits in nn.Sequential."""

    def forward(self, x):
        return super().forward(x)[0]
'''
TORCH_CLASSES: dict[str, str] = {
    **{name: _KEEP_OUTPUT.format(name=name) for name in ("RNN", "LSTM", "GRU")},
    "MultiheadAttention": '''class MultiheadAttention(nn.MultiheadAttention):
    """torch.nn.MultiheadAttention as self-attention, mha(x, x, x)[0], so that it fits in
    nn.Sequential."""

    def forward(self, x):
        return super().forward(x, x, x, need_weights=False)[0]
''',
    "LastStep": '''class LastStep(nn.Module):
    """The last time step of a sequence: x[:, -1] of (batch, seq_len, features) with batch_first,
    else x[-1] of (seq_len, batch, features)."""

    def __init__(self, batch_first=False):
        super().__init__()
        self.batch_first = batch_first

    def forward(self, x):
        return x[:, -1] if self.batch_first else x[-1]

    def extra_repr(self):
        return f"batch_first={self.batch_first}"
''',
    "SequenceMean": '''class SequenceMean(nn.Module):
    """The mean over the time steps of a sequence: x.mean(1) of (batch, seq_len, features) with
    batch_first, else x.mean(0) of (seq_len, batch, features)."""

    def __init__(self, batch_first=False):
        super().__init__()
        self.batch_first = batch_first

    def forward(self, x):
        return x.mean(1 if self.batch_first else 0)

    def extra_repr(self):
        return f"batch_first={self.batch_first}"
''',
    "Patches": '''class Patches(nn.Module):
    """An image's non-overlapping patch_size x patch_size patches as a sequence of tokens:
    (batch, channels, height, width) -> (batch, patches, channels * patch_size ** 2), patches in
    row-major order, each one's values in (channel, row, column) order."""

    def __init__(self, patch_size):
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x):
        return nn.functional.unfold(x, self.patch_size, stride=self.patch_size).transpose(1, 2)

    def extra_repr(self):
        return f"patch_size={self.patch_size}"
''',
    "PositionalEmbedding": '''class PositionalEmbedding(nn.Module):
    """A learned position added to each token: x[:, t] + weight[t] with batch_first, else
    x[t] + weight[t]; weight (num_positions, embedding_dim)."""

    def __init__(self, num_positions, embedding_dim, batch_first=False):
        super().__init__()
        self.batch_first = batch_first
        self.weight = nn.Parameter(torch.zeros(num_positions, embedding_dim))

    def forward(self, x):
        if self.batch_first:
            return x + self.weight[:x.shape[1]]
        return x + self.weight[:x.shape[0]].unsqueeze(1)
''',
}


@functools.cache
def torch_namespace() -> dict[str, Any]:
    """``torch``, ``nn`` and the classes of TORCH_CLASSES, defined once per process from their
    source (the same class objects on every call): the names the code rebuild_code prints uses."""
    import torch
    from torch import nn

    namespace: dict[str, Any] = {"torch": torch, "nn": nn}
    for name, source in TORCH_CLASSES.items():
        exec(compile(source, f"<backprop.export.TORCH_CLASSES[{name!r}]>", "exec"), namespace)
    return namespace


def torch_class(spec: LayerSpec) -> Any:
    """The torch class export builds for a layer or container: torch.nn's of the same name, or for
    a recurrent layer and LastStep the class of TORCH_CLASSES."""
    namespace = torch_namespace()
    if spec.class_name in TORCH_CLASSES:
        return namespace[spec.class_name]
    return getattr(namespace["nn"], spec.class_name)


def torch_module(network: LayerSpec, dtype: str = "float32") -> Any:
    """The torch.nn module tree of ``network`` (torch's own classes and initialisation; a recurrent
    layer's and LastStep's from TORCH_CLASSES), in dtype."""
    import torch

    def make(spec: LayerSpec) -> Any:
        cls = torch_class(spec)
        if spec.info.container:
            return cls(*(make(child) for child in spec.children))
        return cls(**spec.info.torch_args(spec.args))

    return make(network).to(getattr(torch, dtype))


def _transposed(network: LayerSpec, key: str) -> bool:
    path, _, name = key.rpartition(".")
    return name in find(network, path).info.transposed


def torch_state_shapes(network: LayerSpec) -> dict[str, tuple[int, ...]]:
    """torch_module(network).state_dict()'s keys and shapes, in its order: state_shapes with
    Linear weights (out, in) and, after each batch norm's buffers, its ``num_batches_tracked``
    (a 0-d int64 counter, shape ())."""
    shapes: dict[str, tuple[int, ...]] = {}
    for key, shape in state_shapes(network).items():
        shapes[key] = shape[::-1] if _transposed(network, key) else shape
        path, _, name = key.rpartition(".")
        if name == "running_var":
            shapes[join(path, "num_batches_tracked")] = ()
    return shapes


def to_torch_layout(network: LayerSpec, state: Mapping[str, np.ndarray],
                    num_batches_tracked: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """An engine state dict (Linear weights (in, out)) as torch's: Linear weights transposed,
    every batch norm's num_batches_tracked (by layer path, default 0) added as a 0-d int64. Keys
    and order: torch_state_shapes(network). KeyError naming a key the state lacks."""
    tracked = num_batches_tracked or {}
    out: dict[str, np.ndarray] = {}
    for key in torch_state_shapes(network):
        path, _, name = key.rpartition(".")
        if name == "num_batches_tracked":
            out[key] = np.array(int(tracked.get(path, 0)), np.int64)
        elif _transposed(network, key):
            out[key] = np.ascontiguousarray(np.asarray(state[key]).T)
        else:
            out[key] = np.asarray(state[key])
    return out


def from_torch_layout(network: LayerSpec, state: Mapping[str, Any],
                      dtype: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """torch's state dict (NumPy arrays in torch's layout) as (an engine state dict with Linear
    weights (in, out), every batch norm's num_batches_tracked by layer path).

    The keys must be exactly torch_state_shapes(network)'s, each of its shape; num_batches_tracked
    an integer >= 0, or absent: files from before torch 0.4.1 have none, and torch's strict
    load_state_dict accepts that (pytorch/pytorch#8430), a fresh layer's counter staying 0; so is
    it here. Raises ValueError/TypeError naming the key (missing, unexpected, wrong shape, not
    floating point, NaN/Inf); floats are cast to ``dtype`` (default: the first one's).
    """
    expected = torch_state_shapes(network)
    missing = [key for key in expected if key not in state and key.rpartition(".")[2] != "num_batches_tracked"]
    extra = [key for key in state if key not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(map(str, extra))}"] if extra else [])
        raise ValueError(f"state dict does not match the layers: {'; '.join(parts)} (expected the keys "
                         f"{', '.join(expected)})")
    tracked: dict[str, int] = {}
    engine: dict[str, np.ndarray] = {}
    for key, shape in expected.items():
        path, _, name = key.rpartition(".")
        if key not in state:  # a num_batches_tracked an old torch did not write: the count starts at 0
            tracked[path] = 0
            continue
        value = np.asarray(state[key])
        if name == "num_batches_tracked":
            if value.shape != () or value.dtype.kind not in "iu" or int(value) < 0:
                raise ValueError(f"{key}: expected a 0-d integer >= 0, got {value.dtype} {value.shape}")
            tracked[path] = int(value)
            continue
        if value.shape != shape:
            raise ValueError(f"{key}: expected shape {shape} (torch's layout), got {value.shape}")
        engine[key] = value.T if _transposed(network, key) else value
    if dtype is None:
        dtype = next((v.dtype.name for v in engine.values() if v.dtype.kind == "f"), "float32")
    checked = check_model_state(state_shapes(network), engine, dtype)
    return {key: np.ascontiguousarray(value, dtype) for key, value in checked.items()}, tracked


def checkpoint_module(checkpoint: Checkpoint) -> Any:
    """The checkpoint's network as its torch.nn module tree on the CPU, loaded (strictly: every
    key, one to one) with its parameters, buffers and batch norm counters."""
    import torch

    network = checkpoint.config.network
    module = torch_module(network, checkpoint.config.dtype)
    state = to_torch_layout(network, checkpoint.params, checkpoint.num_batches_tracked)
    module.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in state.items()})
    return module


def read_torch_state(path: str, network: LayerSpec) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Import a torch.nn state dict saved by ``torch.save(model.state_dict(), path)`` for a model
    of ``network``: (an engine state dict, Linear weights (in, out), in the file's float dtype
    when that is float32 or float64, else float32 (float16, bfloat16 and the float8 kinds widen to
    it exactly); every batch norm's num_batches_tracked by layer path), ready for any engine's
    ``Sequential.load_state_dict`` (engine_core.specs.build).

    Read with ``weights_only=True`` (nothing in the file is executed). Raises TorchImportError naming
    the file: unreadable, not a dict of tensors, keys or shapes that do not match ``specs``, a
    parameter or buffer that is not floating point (a num_batches_tracked that is not an integer)
    or that NumPy cannot hold (complex32, quantized, sparse), naming its key and dtype.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a bad file: all are one-line errors here
        text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split())  # torch's message has ANSI bold
        if "Weights only load failed" in text:  # a pickled object other than tensors: torch.save(model)
            raise TorchImportError(f"{path}: a whole pickled object, not a state dict (torch.save(model) stores "
                                   "the model's class, which weights_only loading never runs): save "
                                   "torch.save(model.state_dict(), PATH) and import that") from None
        raise TorchImportError(f"{path}: not a readable torch state dict ({type(error).__name__}: "
                               f"{text[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TorchImportError(f"{path}: expected a state dict (a dict of tensors, torch.save(model.state_dict())), "
                           f"got {type(state).__name__}")
    arrays = {str(key): _numpy_of(path, str(key), value) for key, value in state.items()}
    floats = [value.dtype.name for value in arrays.values() if value.dtype.kind == "f"]
    dtype = floats[0] if floats and floats[0] in ("float32", "float64") else "float32"
    try:
        return from_torch_layout(network, arrays, dtype)
    except (ValueError, TypeError) as error:
        raise TorchImportError(f"{path}: {' '.join(str(error).split())}", mismatch=True) from None


# The floating types NumPy holds as they are; torch's others (bfloat16, the float8 kinds) have
# fewer exponent and mantissa bits than float32, so each of their values is a float32 exactly.
_NUMPY_FLOATS = ("float16", "float32", "float64")


def _numpy_of(path: str, key: str, tensor: Any) -> np.ndarray:
    """A state-dict tensor as a NumPy array on the CPU: a floating tensor of a type NumPy lacks
    (bfloat16, float8_e4m3fn, ...) widened to float32, which holds each of its values exactly.
    TorchImportError naming the key and its dtype for a tensor NumPy cannot hold (complex32,
    quantized, packed or sparse tensors)."""
    import torch

    value = tensor.detach()
    dtype = str(value.dtype).removeprefix("torch.")
    try:
        value = value.cpu()
        if value.is_floating_point() and dtype not in _NUMPY_FLOATS:
            value = value.to(torch.float32)
        return value.resolve_conj().resolve_neg().numpy()
    except (TypeError, RuntimeError, NotImplementedError):
        what = dtype
        if value.layout != torch.strided:
            what += f" {str(value.layout).removeprefix('torch.')}"
        if value.device.type != "cpu":
            what += f" {value.device.type}"  # a meta tensor holds no values at all
        raise TorchImportError(
            f"{path}: {key}: a {what} tensor, which NumPy cannot hold; expected dense floating-point parameters "
            "and buffers (float16, bfloat16, float32, float64, float8) and an integer num_batches_tracked") from None


def input_transform_code(network: LayerSpec, dtype: str = "float32", imports: bool = True) -> str:
    """Python lines (with their imports, or only torchvision's: after rebuild_code's) defining ``transform``, the
    torchvision transform that turns one 28x28 image (PIL or uint8, as torchvision's MNIST and
    FashionMNIST datasets give them) into the input the model was trained on: x / 255
    (ToTensor), then (x - 0.5) / 0.5 (Normalize: [-1, 1]), in the model's dtype, shaped as
    architecture.input_shape says (784 pixels, a (1, 28, 28) image or 28 rows of 28)."""
    shape = input_shape(network)
    steps = ["    transforms.ToTensor(),  # (28, 28) uint8 -> (1, 28, 28) float32 in [0, 1]: x / 255",
             "    transforms.Normalize((0.5,), (0.5,)),  # -> [-1, 1]: (x - 0.5) / 0.5, as the run's data"]
    if dtype != "float32":
        steps.append(f"    transforms.ConvertImageDtype(torch.{dtype}),  # the model's dtype")
    if shape == (PIXELS,):
        steps.append(f"    nn.Flatten(0),  # -> ({PIXELS},): the model reads rows of {PIXELS} pixels")
    elif shape == SEQUENCE_SHAPE:
        steps.append("    nn.Flatten(0, 1),  # -> (28, 28): a sequence of 28 rows (time steps) of 28 pixels")
    # After rebuild_code's lines only torchvision's import is new: the model loads without torchvision.
    head = ("import torch\nfrom torch import nn\n" if imports else "") + "from torchvision import transforms\n\n"
    return (f"{head}# The input the model expects, one image at a time; e.g.\n"
            "# torchvision.datasets.FashionMNIST(root, train=False, transform=transform)\n"
            "transform = transforms.Compose([\n" + "\n".join(steps) + "\n])")


def rebuild_code(network: LayerSpec, dtype: str = "float32", load_path: str = "PATH") -> str:
    """Python lines (unindented: they run as pasted) that rebuild torch_module(network, dtype), load
    the file at ``load_path`` into it (written as a Python string literal; the default leaves the
    placeholder PATH), put it in eval mode, and define ``transform``, the input it expects
    (input_transform_code).

    Each layer is spelled from its arguments (torch_spelling), not from torch's repr, which cannot
    rebuild every layer: it prints ``padding=same`` unquoted and leaves out AvgPool2d's ceil_mode,
    count_include_pad and divisor_override.
    """
    cast = "" if dtype == "float32" else f".to(torch.{dtype})"  # a fresh interpreter's default is float32
    where = "PATH" if load_path == "PATH" else repr(load_path)
    # The classes torch.nn lacks (TORCH_CLASSES), each defined once, before the model.
    used = dict.fromkeys(spec.class_name for _, spec in network.walk() if spec.class_name in TORCH_CLASSES)
    classes = "".join(f"\n\n{TORCH_CLASSES[name]}" for name in used) + ("\n\n" if used else "")
    return (
        f"import torch\nfrom torch import nn\n{classes}"
        f"model = {torch_spelling(network)}{cast}\n"
        f"model.load_state_dict(torch.load({where}, weights_only=True))\n"
        "model.eval()  # inference: dropout off, batch norm on its running statistics\n\n"
        f"{input_transform_code(network, dtype, imports=False)}"
    )


def export_metadata(checkpoint: Checkpoint, model_path: str, source: str | None = None) -> dict[str, Any]:
    """What the sidecar file beside an exported model says (metadata_path): the state dict's
    file, the input the model expects (per-sample shape, dtype, the pixel scaling and the
    transform's code), the dataset, its folder and its class names by label, where it came from (the
    checkpoint file ``source``, its engine, epochs and batches trained) and the run's last test
    accuracy (None for a checkpoint taken inside an epoch: those weights were never evaluated)."""
    from .datasets import class_names

    config = checkpoint.config
    history = checkpoint.progress.history
    return {
        "format": EXPORT_FORMAT,
        "state_dict": os.path.basename(model_path),
        "input": {
            "shape": list(input_shape(config.network)),
            "dtype": config.dtype,
            "pixels": "28x28 uint8 images scaled to [-1, 1]: (x / 255 - 0.5) / 0.5",
            "transform": input_transform_code(config.network, config.dtype),
        },
        "output": "logits, one per class (softmax for probabilities)",
        "layers": format_layers(config.network),  # `backprop import MODEL_PT --layers '...'` takes it back
        "dataset": config.dataset,
        "data_dir": checkpoint.data_dir,  # where the run read it: `import` records it for evaluate and resume
        "classes": class_names(config.dataset),
        "checkpoint": None if source is None else os.path.abspath(source),
        "engine": checkpoint.engine,
        "epochs": checkpoint.progress.epoch,
        # A checkpoint taken inside an epoch (Ctrl-C) holds weights past the last evaluation: no accuracy.
        "batches_past_epochs": checkpoint.progress.step,
        "test_accuracy": history[-1].get("test_acc") if history and not checkpoint.progress.step else None,
    }


def torch_spelling(spec: LayerSpec) -> str:
    """The Python that constructs torch_module(spec) (before the dtype cast): ``nn.Conv2d(1, 6, 5,
    padding='same')``, ``nn.Sequential(nn.ReLU(), ...)``; torch's required arguments by position,
    the others by name where they differ from torch's defaults (Kind.torch_args' names); a
    recurrent layer or LastStep by its class of TORCH_CLASSES, ``LSTM(28, 128, batch_first=True)``
    (rebuild_code prints its definition)."""
    if spec.info.container:
        return f"nn.{spec.class_name}({', '.join(torch_spelling(child) for child in spec.children)})"
    defaults = spec.info.defaults
    shown = []
    for name, value in spec.info.torch_args(spec.args).items():
        if name in defaults and defaults[name] is REQUIRED:
            shown.append(repr(value))
        elif name not in defaults or type(value) is not type(defaults[name]) or value != defaults[name]:
            shown.append(f"{name}={value!r}")
    prefix = "" if spec.class_name in TORCH_CLASSES else "nn."
    return f"{prefix}{spec.class_name}({', '.join(shown)})"


def export_torch(checkpoint: Checkpoint, path: str, load_path: str | None = None, source: str | None = None) -> str:
    """Write the checkpoint's network as a torch.nn.Sequential state dict to ``path`` (atomically,
    readable by ``torch.load(path, weights_only=True)``) and its metadata (export_metadata) to
    metadata_path(path); returns the code that rebuilds it, loads ``load_path`` (default
    ``path``) and defines its input transform, ready to run. ``source``: the checkpoint's file,
    recorded in the metadata."""
    import torch

    module = checkpoint_module(checkpoint)
    # keep_vars=False: plain tensors, buffers included (batch norm's num_batches_tracked as int64).
    state = {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
    metadata = json.dumps(export_metadata(checkpoint, path, source), indent=2) + "\n"
    # An earlier export's metadata goes first: if writing the model fails, none describes the wrong one.
    if is_export_metadata(metadata_path(path)):
        os.remove(metadata_path(path))
    atomic_write(path, lambda f: torch.save(state, f))
    atomic_write_text(metadata_path(path), metadata)
    return rebuild_code(checkpoint.config.network, checkpoint.config.dtype,
                        path if load_path is None else load_path)
