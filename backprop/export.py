"""Export a checkpoint as a plain torch.nn.Sequential state dict (weights (out, in)), built on the
autograd oracle's own torch.nn module, so the keys and the rebuild code are whatever that module is."""

from __future__ import annotations

from typing import Any

from .checkpoint import Checkpoint
from .fileio import atomic_write


def oracle_module(checkpoint: Checkpoint) -> Any:
    """The checkpoint's network as torch.nn.Sequential(Linear, activation, ..., Linear), on the CPU.

    Built by torch_net.autograd.MLP from the checkpoint's config and loaded with its parameters
    (which that MLP checks key by key).
    """
    from torch_net import autograd  # imports torch: only when exporting

    config = checkpoint.config
    net = autograd.MLP(config.sizes, activation=config.activation, init=config.init, seed=config.seed,
                       dtype=config.dtype)
    net.load_state_dict(checkpoint.params)
    return net.module


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
    state = {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
    atomic_write(path, lambda f: torch.save(state, f))
    return rebuild_code(module, path if load_path is None else load_path)
