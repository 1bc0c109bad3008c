"""The networks `backprop bench` can time (its workloads), defined apart from the timing code so
that reading them (the command line's help) imports nothing of the benchmark."""

from __future__ import annotations

from typing import Any

from engine_core.specs import LayerSpec, mlp

from .config import CLASSES, IN_FEATURES, OPTIMIZER_DEFAULTS, PRESETS, preset_network
from .gemms import Gemm, network_gemms

# The networks bench can time: a network (a tree) and its init, the presets' for the presets'
# names; lr: SGD's (other optimizers run at torch's default); batch_sizes: the default --batch-sizes.
WORKLOADS: dict[str, dict[str, Any]] = {
    **{name: {"network": preset_network(name), "init": PRESETS[name]["init"], "lr": PRESETS[name]["lr"],
              "batch_sizes": (32, 128, 1024) if name != "lenet" else (64,)}
       for name in ("notebook", "default", "lenet")},
    # How cost grows with width: 784-1024-1024-10.
    "wide": {"network": mlp([IN_FEATURES, 1024, 1024, CLASSES], "relu"), "init": "he_normal", "lr": 0.05,
             "batch_sizes": (32, 128, 1024)},
    # The lstm preset's step: its network and its gradient clipping (clip_grad_norm, as the trainer
    # clips); the preset trains with Adam (bench --optimizer adam), SGD's lr is for timing SGD steps.
    "lstm": {"network": preset_network("lstm"), "init": PRESETS["lstm"]["init"], "lr": 0.05, "batch_sizes": (64,),
             "clip_grad_norm": PRESETS["lstm"]["clip_grad_norm"]},
    # The vit preset's step at its batch, with its clipping (it trains with AdamW: bench --optimizer adamw).
    "vit": {"network": preset_network("vit"), "init": PRESETS["vit"]["init"], "lr": 0.05, "batch_sizes": (128,),
            "clip_grad_norm": PRESETS["vit"]["clip_grad_norm"]},
}
DEFAULT_WORKLOADS = ("notebook", "default", "lenet")


def workload_lr(workload: str, optimizer: str) -> float:
    """The workload's SGD learning rate, or torch's default for other optimizers."""
    return float(WORKLOADS[workload]["lr"]) if optimizer == "sgd" else OPTIMIZER_DEFAULTS[optimizer]["lr"]


def workload_network(workload: str) -> LayerSpec:
    """The workload's network (a tree, engine_core.specs)."""
    return WORKLOADS[workload]["network"]


def workload_gemms(workload: str, batch: int) -> list[Gemm]:
    """The GEMMs of one training step of the workload at ``batch`` (backprop.gemms)."""
    return network_gemms(workload_network(workload), batch)
