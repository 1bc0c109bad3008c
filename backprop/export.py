"""Export a checkpoint as a plain torch.nn.Sequential state dict (weights (out, in)), and import
one back.

An MLP is built on the autograd oracle's own torch.nn module, so the keys and the rebuild code
are whatever that module is. A layer stack (config.layers) becomes torch.nn.Sequential of the
torch.nn classes of the same names and arguments (Dropout without its seed: torch draws its own
masks); the keys map one to one (engine_core.specs.torch_state_shapes: ``"{index}.weight"``,
``"{index}.running_mean"``, ``"{index}.num_batches_tracked"``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine_core.specs import LayerSpec, from_torch_layout, to_torch_layout

from .checkpoint import Checkpoint
from .fileio import atomic_write


class TorchImportError(ValueError):
    """A .pt file that cannot be imported; the message is one line naming the file and why."""


def torch_sequential(specs: Sequence[LayerSpec], dtype: str = "float32") -> Any:
    """torch.nn.Sequential of torch.nn's own layers for ``specs`` (torch's initialisation), in dtype."""
    import torch
    from torch import nn

    layers = []
    for spec in specs:
        args = {k: v for k, v in spec.args.items() if not (spec.kind == "dropout" and k == "seed")}
        layers.append(getattr(nn, spec.class_name)(**args))
    return nn.Sequential(*layers).to(getattr(torch, dtype))


def oracle_module(checkpoint: Checkpoint) -> Any:
    """The checkpoint's network as torch.nn.Sequential(Linear, activation, ..., Linear), on the CPU.

    Built by torch_net.autograd.MLP from the checkpoint's config and loaded with its parameters
    (which that MLP checks key by key).
    """
    from torch_net import autograd  # imports torch: only when exporting

    config = checkpoint.config
    if config.layers is not None:
        return layers_module(config.layers, checkpoint.params, checkpoint.num_batches_tracked, config.dtype)
    net = autograd.MLP(config.sizes, activation=config.activation, init=config.init, seed=config.seed,
                       dtype=config.dtype)
    net.load_state_dict(checkpoint.params)
    return net.module


def layers_module(specs: Sequence[LayerSpec], params: dict[str, np.ndarray], num_batches_tracked: dict[int, int],
                  dtype: str) -> Any:
    """torch_sequential(specs) loaded (strictly: every key, one to one) with an engine state dict
    and the batch norms' counters."""
    import torch

    module = torch_sequential(specs, dtype)
    state = to_torch_layout(specs, params, num_batches_tracked)
    module.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in state.items()})
    return module


def read_torch_state(path: str, specs: Sequence[LayerSpec]) -> tuple[dict[str, np.ndarray], dict[int, int]]:
    """Import a torch.nn.Sequential state dict saved by ``torch.save(model.state_dict(), path)``
    for a model of ``specs``: (an engine state dict, Linear weights (in, out), in the file's float
    dtype; every batch norm's num_batches_tracked by layer index), ready for any engine's
    ``Sequential.load_state_dict`` (engine_core.specs.build).

    Read with ``weights_only=True`` (nothing in the file is executed). Raises TorchImportError naming
    the file: unreadable, not a dict of tensors, keys or shapes that do not match ``specs``.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a bad file: all are one-line errors here
        raise TorchImportError(f"{path}: not a readable torch state dict ({type(error).__name__}: "
                           f"{' '.join(str(error).split())[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TorchImportError(f"{path}: expected a state dict (a dict of tensors, torch.save(model.state_dict())), "
                           f"got {type(state).__name__}")
    arrays = {str(key): value.detach().cpu().numpy() for key, value in state.items()}
    floats = [value.dtype.name for value in arrays.values() if value.dtype.kind == "f"]
    dtype = floats[0] if floats and floats[0] in ("float32", "float64") else "float32"
    try:
        return from_torch_layout(specs, arrays, dtype)
    except (ValueError, TypeError) as error:
        raise TorchImportError(f"{path}: {' '.join(str(error).split())}") from None


def rebuild_code(module: Any, load_path: str = "PATH") -> str:
    """Python lines (unindented: they run as pasted) that rebuild ``module`` (a Sequential of
    torch.nn layers) and load the file at
    ``load_path`` into it (written as a Python string literal; the default leaves the placeholder
    PATH), spelled from the module's children and its parameters' dtype."""
    import torch

    layers = ", ".join(f"nn.{child!r}" for child in module.children())
    dtype = next(module.parameters()).dtype
    cast = "" if dtype == torch.get_default_dtype() else f".to({dtype})"
    where = "PATH" if load_path == "PATH" else repr(load_path)
    return (
        "import torch\n"
        "from torch import nn\n"
        f"model = nn.Sequential({layers}){cast}\n"
        f"model.load_state_dict(torch.load({where}, weights_only=True))"
    )


def export_torch(checkpoint: Checkpoint, path: str, load_path: str | None = None) -> str:
    """Write the checkpoint's network as a torch.nn.Sequential state dict to ``path`` (atomically,
    readable by ``torch.load(path, weights_only=True)``); returns the code that rebuilds it and
    loads ``load_path`` (default ``path``), ready to run."""
    import torch

    module = oracle_module(checkpoint)
    # keep_vars=False: plain tensors, buffers included (batch norm's num_batches_tracked as int64).
    state = {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
    atomic_write(path, lambda f: torch.save(state, f))
    return rebuild_code(module, path if load_path is None else load_path)
