"""Export a checkpoint as a plain torch.nn.Sequential state dict (weights (out, in))."""

from __future__ import annotations

from .checkpoint import Checkpoint, atomic_write

MODULES = {"identity": "nn.Identity()", "relu": "nn.ReLU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()"}


def sequential_state_dict(checkpoint: Checkpoint) -> dict:
    """{"0.weight": (out, in), "0.bias", "2.weight", ...}: Linear i sits at index 2 i."""
    import torch

    sizes = checkpoint.meta["config"]["sizes"]
    state = {}
    for i in range(len(sizes) - 1):
        state[f"{2 * i}.weight"] = torch.from_numpy(checkpoint.params[f"fc{i}.weight"].T.copy())
        state[f"{2 * i}.bias"] = torch.from_numpy(checkpoint.params[f"fc{i}.bias"].copy())
    return state


def rebuild_code(checkpoint: Checkpoint) -> str:
    config = checkpoint.meta["config"]
    sizes, act = config["sizes"], MODULES[config["activation"]]
    parts = []
    for i in range(len(sizes) - 1):
        if i:
            parts.append(act)
        parts.append(f"nn.Linear({sizes[i]}, {sizes[i + 1]})")
    dtype = "" if config["dtype"] == "float32" else ".double()"
    return (
        "  import torch; from torch import nn\n"
        f"  model = nn.Sequential({', '.join(parts)}){dtype}\n"
        "  model.load_state_dict(torch.load(PATH, weights_only=True))"
    )


def export_torch(checkpoint: Checkpoint, path: str) -> str:
    import torch

    state = sequential_state_dict(checkpoint)
    atomic_write(path, lambda f: torch.save(state, f))
    return rebuild_code(checkpoint)
