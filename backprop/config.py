"""A run's configuration (TrainConfig), the presets, and every choice list the application offers.

Names an engine must understand (activations, inits, dtypes, optimizers) come from engine_core;
the application's own (datasets, schedules, presets) are defined beside what implements them
and gathered here, so the command line, the checkpoint validator and the trainer share one list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import engine_core
from engine_core.errors import clipped
from engine_core.specs import LayerSpec, as_network, mlp

from .architecture import (
    CLASSES,
    GRU_NETWORK,
    LENET,
    LSTM_NETWORK,
    PIXELS,
    VIT_NETWORK,
    LayersSyntaxError,
    check_stack,
    check_trainable,
    describe_network,
)
from .datasets import DATASETS
from .schedules import SCHEDULES

ACTIVATION_NAMES: tuple[str, ...] = tuple(engine_core.ACTIVATION_NAMES)
INIT_NAMES: tuple[str, ...] = tuple(engine_core.INITS)
DTYPE_NAMES: tuple[str, ...] = tuple(engine_core.DTYPES)
OPTIMIZER_NAMES: tuple[str, ...] = tuple(engine_core.OPTIMIZERS)
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
SCHEDULE_NAMES: tuple[str, ...] = SCHEDULES
IN_FEATURES = PIXELS  # 28x28 images (CLASSES: 10, architecture's)

PRESETS: dict[str, dict[str, Any]] = {
    # The original notebook's run, with correct gradients.
    "notebook": dict(hidden=[64, 64, 64, 64, 64], activation="identity", init="xavier_normal",
                     batch_size=32, lr=0.001, momentum=0.0, epochs=20, optimizer="sgd"),
    # A ReLU network that beats it (>= 0.88 test accuracy on Fashion-MNIST).
    "default": dict(hidden=[256, 128], activation="relu", init="he_normal",
                    batch_size=64, lr=0.05, momentum=0.9, epochs=15, optimizer="sgd",
                    lr_schedule="cosine"),
    # LeNet-5 style (architecture.LENET): conv 6@5x5 pad 2, ReLU, max-pool 2, conv 16@5x5, ReLU,
    # max-pool 2, flatten, 120, 84, 10 (>= 0.90 test accuracy on Fashion-MNIST; docs/results.md).
    "lenet": dict(network=LENET, init="torch_default",
                  batch_size=64, lr=0.05, momentum=0.9, epochs=10, optimizer="sgd", lr_schedule="cosine"),
    # MNIST read row by row (architecture.LSTM_NETWORK): an LSTM of 128 over the 28 rows of 28
    # pixels, its last step, Linear 10; Adam with the gradients clipped to a global norm of 1, as
    # recurrent nets are trained (>= 0.87 test accuracy on Fashion-MNIST; docs/results.md). "gru":
    # the same with a GRU.
    "lstm": dict(network=LSTM_NETWORK, init="torch_default", batch_size=64, lr=1e-3, epochs=5, optimizer="adam",
                 clip_grad_norm=1.0, lr_schedule="cosine"),
    "gru": dict(network=GRU_NETWORK, init="torch_default", batch_size=64, lr=1e-3, epochs=5, optimizer="adam",
                clip_grad_norm=1.0, lr_schedule="cosine"),
    # A tiny vision transformer (architecture.VIT_NETWORK): 16 patches of 7x7, d_model 64, two
    # pre-LN encoder layers of 4 heads, mean of the tokens, linear 10; AdamW with torch's defaults
    # (weight decay 1e-2) at lr 2e-3, the gradients clipped to a global norm of 1, as transformers
    # are trained (>= 0.87 test accuracy on Fashion-MNIST; docs/results.md).
    "vit": dict(network=VIT_NETWORK, init="torch_default", batch_size=128, lr=2e-3, epochs=10, optimizer="adamw",
                clip_grad_norm=1.0, lr_schedule="cosine"),
}
# An MLP preset describes its network by hidden widths and activation (the --hidden and
# --activation flags change them); every preset's network is a tree (preset_network).
NETWORK_FLAGS = ("layers", "hidden", "activation")


def preset_network(preset: str) -> LayerSpec:
    """The preset's network as a tree: an MLP preset's [784, *hidden, 10] with its activation."""
    values = PRESETS[preset]
    if "network" in values:
        return values["network"]
    return mlp([IN_FEATURES, *values["hidden"], CLASSES], values["activation"])


PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
DEFAULT_PRESET = "default"

# torch.optim's own defaults for the hyper-parameters the command line offers (torch 2.x: every
# optimizer's lr is 1e-3, AdamW decays weights by 1e-2; tests/backprop/test_config.py checks them
# against the installed torch). A preset's lr and momentum belong to the preset's own optimizer.
OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 1e-3, "momentum": 0.0, "weight_decay": 0.0},
    "adam": {"lr": 1e-3, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "weight_decay": 1e-2},
}


class ConfigError(ValueError):
    """Flags that make no sense together; the message names the flag (``--nesterov ...``)."""


def default_lr(preset: str, optimizer: str) -> float:
    """The learning rate a run gets without --lr: the preset's when ``optimizer`` is the preset's
    own, otherwise torch.optim's default for ``optimizer`` (so ``--optimizer adam`` alone trains
    at Adam's 1e-3, not at an SGD preset's 0.05)."""
    values = PRESETS[preset]
    if optimizer == values["optimizer"]:
        return float(values["lr"])
    return OPTIMIZER_DEFAULTS[optimizer]["lr"]


def default_momentum(preset: str, optimizer: str) -> float:
    """SGD's momentum without --momentum: the preset's when it is an SGD preset, else 0 (and 0
    for optimizers without momentum)."""
    values = PRESETS[preset]
    if optimizer == "sgd" and values["optimizer"] == "sgd":
        return float(values.get("momentum", 0.0))
    return 0.0


def network_from_flags(preset: str, layers: Any = None, hidden: list[int] | None = None,
                       activation: str | None = None) -> LayerSpec | None:
    """The network the --layers, --hidden and --activation flags describe (None: none given, the
    preset's stays): --layers as it is; --hidden/--activation change an MLP preset's widths or
    activation. Raises ConfigError naming the flags for --layers with an MLP flag, an MLP flag
    with a preset whose network is no MLP (lenet), and --activation without hidden layers."""
    mlp_flags = [f"--{flag}" for flag, value in (("hidden", hidden), ("activation", activation)) if value is not None]
    if layers:
        if mlp_flags:
            raise ConfigError(f"--layers cannot be combined with {', '.join(mlp_flags)}: --layers describes the "
                              "whole network, and --hidden and --activation describe an MLP")
        network = as_network(layers)
        try:  # --layers was checked as it was parsed; a network built in Python is checked here
            check_stack(network)
            check_trainable(network)
        except ValueError as error:
            raise ConfigError(f"layers: {str(error).removeprefix('--layers: ')}") from None
        return network
    if not mlp_flags:
        return None
    values = PRESETS[preset]
    if "hidden" not in values:
        raise ConfigError(f"{', '.join(mlp_flags)} cannot be combined with --preset {preset}: its network is a layer "
                          "stack; change it with --layers, or pick an MLP preset (default, notebook)")
    widths = values["hidden"] if hidden is None else hidden
    if not widths and activation is not None:
        raise ConfigError(f"--activation {activation}: a network without hidden layers (--hidden none) "
                          "has no activation")
    return mlp([IN_FEATURES, *widths, CLASSES], activation or values["activation"])


def new_config(preset: str | None = None, **flags: Any) -> TrainConfig:
    """A new run's configuration: ``preset`` (default "default"), overridden by ``flags`` (the
    TrainConfig fields, plus ``epochs``, and the network flags ``layers``, ``hidden`` and
    ``activation``; None means "not given").

    Defaults that depend on the choice: lr and momentum are the preset's for the preset's own
    optimizer and torch.optim's defaults for another (see default_lr); weight_decay is torch's
    for the optimizer (0, AdamW 0.01); init is the preset's, and torch's default for a network
    given by --layers. Raises ConfigError naming the flag for combinations that make no sense:
    --momentum/--nesterov with Adam, --nesterov without momentum, --step-size or --gamma without
    the step schedule, a --batch-size larger than --limit, and those of network_from_flags.
    """
    name = preset or DEFAULT_PRESET
    given = {k: v for k, v in flags.items() if v is not None}
    unknown = set(given) - {f.name for f in fields(TrainConfig)} - set(NETWORK_FLAGS)
    if unknown:
        raise TypeError(f"new_config: unknown fields {sorted(unknown)}")
    network = network_from_flags(name, **{flag: given.pop(flag, None) for flag in NETWORK_FLAGS})
    preset_values = {k: v for k, v in PRESETS[name].items() if k not in ("hidden", "activation")}
    values: dict[str, Any] = {**TrainConfig().__dict__, **preset_values, "preset": name,
                              "network": preset_network(name)}
    if network is not None:
        values["network"] = network
        if flags.get("layers") is not None:
            values["init"] = "torch_default"  # a stack given as layers starts as torch would start it
    values.update(given)
    if values["clip_grad_norm"] == math.inf:  # --clip-grad-norm none: clipping at inf clips nothing
        values["clip_grad_norm"] = None
    optimizer = values["optimizer"]
    if optimizer != "sgd":
        if given.get("nesterov"):
            raise ConfigError(f"--nesterov applies to --optimizer sgd only: Nesterov momentum is an option of "
                              f"SGD, and {optimizer} has none")
        if given.get("momentum"):
            raise ConfigError(f"--momentum applies to --optimizer sgd only: {optimizer} has no momentum setting "
                              "(its betas play that part)")
    if "lr" not in given:
        values["lr"] = default_lr(name, optimizer)
    if "momentum" not in given:
        values["momentum"] = default_momentum(name, optimizer)
    if "weight_decay" not in given:
        values["weight_decay"] = OPTIMIZER_DEFAULTS[optimizer]["weight_decay"]
    if values["momentum"] >= 1:
        # torch.optim.SGD accepts it, but the velocity v = momentum v + g then keeps all of every
        # past gradient and grows without bound: the run can only diverge, and would blame its lr.
        raise ConfigError(f"--momentum {values['momentum']:g}: SGD's velocity (v = momentum * v + grad) grows "
                          "without bound for a momentum of 1 or more, whatever the learning rate; give a value "
                          "from 0 up to below 1 (0.9 is usual)")
    if values["nesterov"] and values["momentum"] <= 0:
        source = "--momentum 0" if "momentum" in given else f"the {name} preset's momentum 0"
        raise ConfigError(f"--nesterov needs a momentum above 0 ({source}): add e.g. --momentum 0.9")
    if values["lr_schedule"] != "step":
        stray = [flag for flag in ("step_size", "gamma") if flag in given]
        if stray:
            source = "--lr-schedule" if "lr_schedule" in given else f"the {name} preset's schedule"
            raise ConfigError(f"--{stray[0].replace('_', '-')} applies to --lr-schedule step, and this run's "
                              f"schedule is {values['lr_schedule']} ({source})")
    limit, batch = values["limit"], values["batch_size"]
    if limit is not None and batch > limit:
        # A flag the user gave needs no source; a preset's value is said to come from the preset.
        source = "" if "batch_size" in given else f" (the {name} preset's batch size)"
        raise ConfigError(f"--batch-size {batch}{source} is larger than --limit {limit}: every epoch would be "
                          f"one short batch of {limit}; give --batch-size {limit} or less")
    values["t_max"] = values["epochs"]  # the cosine period is fixed now, at creation
    return TrainConfig(**values)


def _default_network() -> LayerSpec:
    return mlp([IN_FEATURES, 256, 128, CLASSES], "relu")


@dataclass
class TrainConfig:
    """Everything that decides a run's numbers (and so is stored in every checkpoint).

    network: the network as a tree (engine_core.specs: the root Sequential; an MLP is the tree
    engine_core.specs.mlp gives); init: how its Linear and Conv2d weights start
    (engine_core.specs.initial_state). epochs is how far the run trains (a resumed run may raise
    it); t_max is the period, in epochs, of the cosine schedule, fixed when the run is created
    (default: epochs), so that raising epochs on resume does not change the rates already
    scheduled. lr, momentum, weight_decay, gamma and eps are torch.optim's hyper-parameters of
    the same names; limit keeps only the first N training samples. clip_grad_norm: after every
    backward, torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm) (None: no clipping, also
    what new_config makes of inf, the command line's --clip-grad-norm none; a
    stored config written before the field existed reads as None, backprop.legacy.ADDED_FIELDS).
    """

    dataset: str = "mnist"
    network: LayerSpec = field(default_factory=_default_network)
    init: str = "he_normal"
    dtype: str = "float32"
    seed: int = 0
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lr_schedule: str = "constant"
    step_size: int = 5
    gamma: float = 0.1
    limit: int | None = None
    preset: str = "default"
    t_max: int | None = None
    clip_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.t_max is None:
            self.t_max = self.epochs

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field; the network as ``layers``: the root Sequential's
        children, each {"kind", "args"} (and "children" for a nested container; LayerSpec.to_json)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "network"}
        out["betas"] = list(self.betas)
        out["layers"] = [spec.to_json() for spec in self.network.children]
        return out

    @classmethod
    def from_json(cls, data: object, legacy: bool = False) -> TrainConfig:
        """The config stored by to_json, validated in full. With ``legacy`` (a checkpoint of
        version 1 to 3, written before the network was one tree) its network fields are converted
        first (backprop.legacy.network_fields: ``hidden`` and ``activation`` with ``layers`` null
        or absent are the MLP they describe); without it they are unknown fields.

        Every field must be present with the right type and a known value; ``layers`` must be a
        network that type-checks from MNIST-format input to 10 logits, each layer carrying every
        argument of its kind (none filled in with a default: ``config.layers[i].<argument>:
        missing``). Raises ValueError (a wrong or missing value) or TypeError (a wrong type)
        whose message starts with ``config.<field>``.
        """
        from .legacy import added_fields, network_fields

        if not isinstance(data, dict):
            raise TypeError(f"config: expected a JSON object, got {type(data).__name__}")
        if legacy:
            data = network_fields(data, _hidden, _choice(ACTIVATION_NAMES))
        data = added_fields(data)
        names = [f.name for f in fields(cls) if f.name != "network"]
        for name in [*names, "layers"]:
            if name not in data:
                raise ValueError(f"config.{name}: missing")
        unknown = [k for k in data if k not in names and k != "layers"]
        if unknown:
            raise ValueError(f"config.{unknown[0]}: unknown field")
        for name, check in _FIELD_CHECKS.items():
            check(f"config.{name}", data[name])
        kwargs = {name: data[name] for name in names}
        kwargs["betas"] = tuple(float(b) for b in data["betas"])
        for name in ("lr", "momentum", "weight_decay", "eps", "gamma"):
            kwargs[name] = float(data[name])
        if data["clip_grad_norm"] is not None:
            kwargs["clip_grad_norm"] = float(data["clip_grad_norm"])
        kwargs["network"] = _network(data["layers"])
        return cls(**kwargs)

    def network_summary(self) -> str:
        """``784-256-128-10 relu`` for an MLP (an activation is named only when there are hidden
        layers: ``784-10, no hidden layer``); any other network in the --layers syntax."""
        return describe_network(self.network)

    def optimizer_summary(self) -> str:
        """``sgd lr 0.05 momentum 0.9, cosine schedule``: the optimizer as it trains (and
        ``, clip grad norm 1`` when it clips)."""
        parts = [f"{self.optimizer} lr {self.lr:g}"]
        if self.optimizer == "sgd" and self.momentum:
            parts.append(f"momentum {self.momentum:g}" + (" nesterov" if self.nesterov else ""))
        if self.weight_decay:
            parts.append(f"weight decay {self.weight_decay:g}")
        schedule = {"constant": "constant lr", "cosine": "cosine schedule",
                    "step": f"step schedule (x{self.gamma:g} every {self.step_size} epochs)"}[self.lr_schedule]
        clipping = "" if self.clip_grad_norm is None else f", clip grad norm {self.clip_grad_norm:g}"
        return " ".join(parts) + f", {schedule}{clipping}"

    def architecture(self) -> dict[str, Any]:
        """What decides the network's shape and first parameters (without the optimizer)."""
        return {"layers": [spec.to_json() for spec in self.network.children], "init": self.init,
                "dtype": self.dtype}


# -- field validators for TrainConfig.from_json: each raises naming the field ----------------
def _int(name: str, value: object, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")


def _number(name: str, value: object, minimum: float = 0.0, below: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    try:
        fits = math.isfinite(value) and value >= minimum and (below is None or value < below)
    except OverflowError:  # an integer beyond any float
        fits = False
    if not fits:
        upper = f" and < {below:g}" if below is not None else ""
        raise ValueError(f"{name}: expected a finite number >= {minimum:g}{upper}, got {clipped(repr(value))}")


def _choice(choices: tuple[str, ...]):
    def check(name: str, value: object) -> None:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")

    return check


def _hidden(name: str, value: object) -> None:
    if not isinstance(value, list):
        raise TypeError(f"{name}: expected a list of widths, got {value!r}")
    for width in value:
        _int(name, width, minimum=1)


def _betas(name: str, value: object) -> None:
    if not isinstance(value, list) or len(value) != 2:
        raise TypeError(f"{name}: expected two numbers [beta1, beta2], got {value!r}")
    for beta in value:
        _number(name, beta, 0.0, below=1.0)


def _bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected true or false, got {value!r}")


def _optional_positive(name: str, value: object) -> None:
    if value is not None:
        _int(name, value, minimum=1)


def _max_norm(name: str, value: object) -> None:
    """None (no clipping) or a finite number > 0: a max_norm of 0 would zero every gradient."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number > 0 or null (no clipping), got {clipped(repr(value))}")
    try:
        fits = math.isfinite(value) and value > 0
    except OverflowError:  # an integer beyond any float
        fits = False
    if not fits:
        raise ValueError(f"{name}: expected a finite number > 0 or null (no clipping), got {clipped(repr(value))}")


def _network(value: object) -> LayerSpec:
    """config.layers as the network's tree; ValueError/TypeError naming the layer."""
    if not isinstance(value, list) or not value:
        raise TypeError(f"config.layers: expected a non-empty list of {{'kind': ..., 'args': {{...}}}}, got {value!r}")
    # Each layer as stored, every argument present (LayerSpec.from_json: a missing one is an
    # edit, not a default), errors naming config.layers[i].<argument>.
    network = as_network([LayerSpec.from_json(item, f"config.layers[{index}]") for index, item in enumerate(value)])
    try:
        check_stack(network)
    except LayersSyntaxError as error:
        raise ValueError(f"config.layers: {str(error).removeprefix('--layers: ')}") from None
    return network


_FIELD_CHECKS = {
    "dataset": _choice(DATASET_NAMES),
    "init": _choice(INIT_NAMES),
    "dtype": _choice(DTYPE_NAMES),
    "seed": lambda n, v: _int(n, v, minimum=0),
    "epochs": lambda n, v: _int(n, v, minimum=1),
    "batch_size": lambda n, v: _int(n, v, minimum=1),
    "optimizer": _choice(OPTIMIZER_NAMES),
    "lr": _number,
    "momentum": _number,
    "nesterov": _bool,
    "weight_decay": _number,
    "betas": _betas,
    "eps": _number,
    "lr_schedule": _choice(SCHEDULE_NAMES),
    "step_size": lambda n, v: _int(n, v, minimum=1),
    "gamma": _number,
    "limit": _optional_positive,
    "preset": _choice(PRESET_NAMES),
    "t_max": lambda n, v: _int(n, v, minimum=1),
    "clip_grad_norm": _max_norm,
}
