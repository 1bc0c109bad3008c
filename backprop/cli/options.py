"""What every command shares: the parser class, argument types, option groups and their help,
exit codes, run directories, how errors are reported.

A bad flag is argparse's usage error (exit 2), raised before any data is read, in every command;
an unknown flag or choice suggests the close one. A problem with the data or a checkpoint is one
line ``backprop: error: ...`` and exit 1 (see ``fail``).
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from engine_core.specs import KINDS

from ..architecture import LayersSyntaxError, layer_signature, parse_layers
from ..config import (
    ACTIVATION_NAMES,
    DATASET_NAMES,
    DEFAULT_PRESET,
    DTYPE_NAMES,
    INIT_NAMES,
    OPTIMIZER_DEFAULTS,
    OPTIMIZER_NAMES,
    PRESET_NAMES,
    PRESETS,
    SCHEDULE_NAMES,
    TrainConfig,
    preset_network,
)
from ..engines import ENGINES, Engine, EngineError, load_engine
from ..fileio import missing_dirs
from ..rundir import RunDir, RunDirError, claim, claim_new, timestamp

# Exit statuses (the "Errors and recovery" table of docs/checkpoints.md).
EXIT_OK = 0
EXIT_DATA = 1  # a data or checkpoint problem
EXIT_OVER_TOLERANCE = 1  # compare: the engines drifted apart beyond --tol
EXIT_USAGE = 2  # argparse's own status for a bad flag
EXIT_DIVERGED = 3  # the loss became NaN/Inf
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), after saving a checkpoint
EXIT_BROKEN_PIPE = 141  # the reader of our output went away (128 + SIGPIPE, what `yes | head` gives)

DEFAULT_DATA_DIR = "./data"  # the notebook's root='./data'
ENGINE_VARIABLE = "BACKPROP_ENGINE"
DEFAULT_ENGINE = "numpy"

T = TypeVar("T")


# -- the parser: suggestions for near misses, defaults in the help ----------------------------
class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, appending ``(default: X)`` to an option's help unless the help
    already says what its default is (options whose default the preset decides say so
    themselves); lists print comma-separated, as they are typed."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default is argparse.SUPPRESS
                or not action.option_strings):
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"


def close_match(word: str, candidates: Sequence[str]) -> str | None:
    """The candidate nearest to a mistyped ``word`` (difflib), or None when none is near."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors suggest the near miss: an unknown flag
    (``--optimiser`` -> ``--optimizer``), choice or command. (Python 3.14's ``suggest_on_error``
    covers choices only; this does the same on every version, with difflib, and adds flags.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if getattr(self, "suggest_on_error", False):  # Python >= 3.14 suggests itself
            super()._check_value(action, value)  # type: ignore[misc]
            return
        try:
            super()._check_value(action, value)  # type: ignore[misc]
        except argparse.ArgumentError as error:
            choices = [str(c) for c in (action.choices or [])]
            guess = close_match(str(value), choices) if isinstance(value, str) else None
            if guess is None:
                raise
            raise argparse.ArgumentError(action, f"{error.message}; did you mean {guess!r}?") from None

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """As argparse's, but an argument nobody knows is a usage error of this parser at once
        (a subcommand's own, showing its usage), with the closest flag suggested."""
        self._given = list(sys.argv[1:] if args is None else args)
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self._unrecognized(extras))
        return parsed, extras

    def _known(self, flag: str) -> bool:
        name = flag.split("=", 1)[0]
        if name in self._option_string_actions:
            return True
        prefixed = [option for option in self._option_string_actions if option.startswith(name)]
        return self.allow_abbrev and len(prefixed) == 1

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        """Usage line, ``backprop <command>: error: message``, exit 2. A missing required argument
        next to an unknown flag is reported as the unknown flag (``--too`` for ``--to``)."""
        if message.startswith("the following arguments are required"):
            unknown = [arg for arg in getattr(self, "_given", []) if arg.startswith("--") and not self._known(arg)]
            if unknown:
                message = self._unrecognized(unknown)
        super().error(message)

    def _unrecognized(self, extras: list[str]) -> str:
        message = f"unrecognized arguments: {' '.join(extras)}"
        flags = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        for extra in extras:
            if extra.startswith("-"):
                guess = close_match(extra.split("=", 1)[0], flags)
                if guess:
                    return f"{message}; did you mean {guess}?"
        return message


# -- argument types: each rejects a bad value with argparse's usage error (exit 2) ----------
def _bounded(convert: Callable[[str], T], accept: Callable[[T], bool], wrong_text: str,
             wrong_value: str) -> Callable[[str], T]:
    """An argparse type: ``convert(text)``, refused with ``wrong_text`` when it does not convert
    and with ``wrong_value`` when ``accept`` says no (both get the text or value appended)."""
    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{wrong_text}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{wrong_value}, got {value}")
        return value

    return parse


# An integer >= 1 (an epoch count, a batch size, a sample limit).
positive_int = _bounded(int, lambda v: v >= 1, "expected a positive integer", "expected a positive integer (>= 1)")
# An integer >= 0 (a seed: NumPy's generators take no negative seeds).
non_negative_int = _bounded(int, lambda v: v >= 0, "expected an integer >= 0", "expected an integer >= 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a learning rate, a momentum, a tolerance)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a fraction of an epoch)."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def max_norm(text: str) -> float:
    """--clip-grad-norm's value: a finite number > 0 (0 would zero every gradient, and nothing
    would train; a negative one would turn every gradient around), or "none" (also "inf"): no
    clipping, even where the preset clips, given as math.inf (clip_grad_norm_ at inf clips nothing;
    config.new_config records it as no clipping)."""
    if text.strip().lower() in ("none", "inf"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, the largest gradient norm a step keeps, got {text!r}") \
            from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0 (the largest gradient norm a step keeps) "
                                         f"or none (no clipping), got {text}")
    return value


def width_list(text: str) -> list[int]:
    """'64,64' -> [64, 64]; 'none' or '' -> [] (no hidden layer: a linear softmax classifier)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [positive_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive widths such as 64,64, got {text!r}"
        ) from None


def layer_list(text: str) -> Any:
    """A --layers text (backprop.architecture's syntax) as a network (the root Sequential's
    LayerSpec); a usage error naming the layer and the problem otherwise."""
    try:
        return parse_layers(text)
    except LayersSyntaxError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--layers: ")) from None


LAYERS_HELP = ("the network as a stack of layers instead of an MLP: comma-separated KIND or KIND(ARGS), "
               "ARGS positional in torch's order or NAME=VALUE, values Python literals, e.g. 'conv2d(1, 6, 5, "
               "padding=\"same\"), relu, maxpool2d(2), flatten, linear(1176, 10)'; sequential(LAYER, ...) nests. "
               "Kinds, with torch's argument names and defaults (dropout's seed: its masks' generator): "
               + "; ".join(layer_signature(kind) for kind in KINDS) + " (return_indices=True and "
               "padding_mode other than 'zeros' are refused). "
               "A stack whose first layer (after activations and dropout) is a 2-D one (conv2d, a pooling "
               "layer, batchnorm2d) gets (1, 28, 28) images, one whose first is rnn, lstm or gru (28, 28): 28 rows "
               "of 28 pixels, fed batch first (give it and laststep batch_first=True), else 784 pixels; it must "
               "end in 10 logits. --init applies to its Linear and Conv2d weights (default: torch_default; "
               "recurrent layers start as torch's do). Not with --hidden or "
               "--activation (default: the preset's network)")


def comma_list(kind: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argument type: 'a,b,c' -> [kind('a'), kind('b'), kind('c')], empty parts skipped."""

    def parse(text: str) -> list[T]:
        return [kind(part) for part in text.split(",") if part]

    parse.__name__ = f"comma-separated {getattr(kind, '__name__', 'value')}"
    return parse


# -- help texts for defaults the preset decides ----------------------------------------------
def _value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def from_preset(key: str) -> str:
    """``the preset's: 64 (default), 32 (notebook)``: what a preset-decided option defaults to."""
    fallback = getattr(TrainConfig(), key, None)
    values = ", ".join(f"{_value(PRESETS[name].get(key, fallback))} ({name})" for name in PRESET_NAMES
                       if key in PRESETS[name] or fallback is not None)
    return f"the preset's: {values}"


# The layer-stack presets' networks in words (an MLP preset's is its widths).
_PRESET_NETWORKS = {"lenet": "LeNet-5 style CNN",
                    "lstm": "LSTM of 128 reading the image's 28 rows, its last step, linear 10",
                    "gru": "GRU of 128 reading the image's 28 rows, its last step, linear 10",
                    "vit": "vision transformer: 16 patches of 7x7, d_model 64, 2 pre-LN encoder layers of 4 heads, "
                           "mean of the tokens, linear 10"}


def _preset_summary(name: str) -> str:
    values = {k: v for k, v in PRESETS[name].items() if k not in ("hidden", "activation")}
    config = TrainConfig(**{**values, "network": preset_network(name), "preset": name})
    network = _PRESET_NETWORKS.get(name) or config.network_summary()
    return (f"{name}: {network}, {config.init}, batch {config.batch_size}, "
            f"{config.optimizer_summary()}, {config.epochs} epoch{'s' if config.epochs != 1 else ''}")


def _clipping_default() -> str:
    """--clip-grad-norm's default in words: the presets that clip, and no clipping for the rest."""
    clipping = [f"{PRESETS[name]['clip_grad_norm']:g} ({name})" for name in PRESET_NAMES
                if PRESETS[name].get("clip_grad_norm") is not None]
    presets = f"the preset's: {', '.join(clipping)}; otherwise " if clipping else ""
    return f"{presets}no clipping"


def _preset_optimizers() -> str:
    """``sgd; adam for lstm, gru``: the presets' own optimizers, the most common first."""
    by_optimizer: dict[str, list[str]] = {}
    for name in PRESET_NAMES:
        by_optimizer.setdefault(PRESETS[name]["optimizer"], []).append(name)
    common, *others = sorted(by_optimizer, key=lambda optimizer: -len(by_optimizer[optimizer]))
    return "; ".join([common, *(f"{optimizer} for {', '.join(by_optimizer[optimizer])}" for optimizer in others)])


LR_HELP = (
    f"learning rate (default: {from_preset('lr')} when --optimizer is the preset's own ({_preset_optimizers()}); "
    "with another "
    f"optimizer, torch's default for it: "
    + ", ".join(f"{name} {values['lr']:g}" for name, values in OPTIMIZER_DEFAULTS.items())
    + ". So --optimizer adam alone trains at 0.001)"
)


# -- shared option groups ---------------------------------------------------------------------
def add_data_options(parser: argparse.ArgumentParser, dataset_help: str | None = None,
                     data_dir_help: str | None = None) -> None:
    """--dataset and --data-dir (defaults None: each command says what it falls back to)."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                       help=dataset_help or "which MNIST-format dataset (default: mnist)")
    group.add_argument("--data-dir", default=None, metavar="DIR", help=data_dir_help or (
        f"the folder holding <Dataset>/raw/ (the four IDX files) or the legacy <Dataset>/processed/, "
        f"e.g. ../shared/datasets for ../shared/datasets/FashionMNIST/raw/ (default: {DEFAULT_DATA_DIR}; "
        "downloaded there if absent and the network allows)"))


def add_engine_options(parser: argparse.ArgumentParser, multiple: str | None = None) -> None:
    """--engine (or, with ``multiple`` as the default list, --engines) and --device."""
    group = parser.add_argument_group("engine")
    names = " | ".join(ENGINES)
    if multiple is None:
        group.add_argument("--engine", default=None, metavar="ENGINE",
                           help=f"{names} | a module path such as mypkg.my_engine "
                                f"(default: ${ENGINE_VARIABLE}, then {DEFAULT_ENGINE})")
    else:
        group.add_argument("--engines", type=comma_list(str), default=multiple.split(","), metavar="E1,E2,...",
                           help=f"comma-separated engines: {names} or module paths")
    group.add_argument("--device", default="cpu",
                       help="cpu or cuda: any device the engine declares in its DEVICES")


def add_model_options(parser: argparse.ArgumentParser, dtype_default: str | None = "float32",
                      dtype_help: str | None = None) -> None:
    """--layers, --hidden, --activation, --init, --dtype, --seed (defaults None: the preset decides)."""
    group = parser.add_argument_group("model")
    group.add_argument("--layers", type=layer_list, metavar="TEXT", help=LAYERS_HELP)
    group.add_argument("--hidden", type=width_list, metavar="W1,W2,...",
                       help="hidden layer widths, e.g. 256,128; 'none' (or '') for no hidden layer, a linear "
                            f"softmax classifier, which takes no --activation (default: {from_preset('hidden')})")
    group.add_argument("--activation", choices=ACTIVATION_NAMES,
                       help=f"after every hidden layer (default: {from_preset('activation')})")
    group.add_argument("--init", choices=INIT_NAMES,
                       help=f"initialisation of every Linear and Conv2d weight (default: {from_preset('init')}; "
                            "torch_default with --layers)")
    group.add_argument("--dtype", choices=DTYPE_NAMES, default=dtype_default, help=dtype_help)
    group.add_argument("--seed", type=non_negative_int, metavar="N",
                       help="seeds the weights and the batch order (default: 0)")


def add_optimizer_options(parser: argparse.ArgumentParser, schedules: bool = True) -> None:
    """--batch-size, --optimizer, --lr, --momentum; with ``schedules`` also --nesterov,
    --weight-decay and the learning-rate schedule's flags (defaults None: the preset decides)."""
    group = parser.add_argument_group(
        "optimizer", f"A preset's lr and momentum are for its own optimizer ({_preset_optimizers()}); another "
                     "--optimizer gets torch.optim's defaults unless --lr is given.")
    group.add_argument("--batch-size", type=positive_int, metavar="N",
                       help=f"samples per step (default: {from_preset('batch_size')})")
    group.add_argument("--optimizer", choices=OPTIMIZER_NAMES, help=f"(default: {from_preset('optimizer')})")
    group.add_argument("--lr", type=non_negative_float, metavar="X", help=LR_HELP)
    group.add_argument("--momentum", type=non_negative_float, metavar="X",
                       help=f"SGD's momentum, sgd only (default: {from_preset('momentum')}; 0 when --optimizer "
                            "is not the preset's)")
    group.add_argument("--clip-grad-norm", type=max_norm, metavar="X",
                       help="after every backward, clip the gradients to a global norm of at most X by torch's "
                            "rule (torch.nn.utils.clip_grad_norm_): n = sqrt(sum of every gradient's squared 2-norm), "
                            f"each gradient times min(X / (n + 1e-6), 1); none: no clipping, even where the "
                            f"preset clips (default: {_clipping_default()})")
    if not schedules:
        return
    group.add_argument("--nesterov", action="store_true", default=None,
                       help="Nesterov momentum, sgd with a momentum above 0 only (default: off)")
    group.add_argument("--weight-decay", type=non_negative_float, metavar="X",
                       help="L2 penalty, decoupled for adamw (default: torch's for the optimizer: "
                            + ", ".join(f"{name} {values['weight_decay']:g}"
                                        for name, values in OPTIMIZER_DEFAULTS.items()) + ")")
    group.add_argument("--lr-schedule", choices=SCHEDULE_NAMES,
                       help="per-epoch schedule: constant, step (StepLR) or cosine (CosineAnnealingLR over the "
                            f"run's epochs) (default: {from_preset('lr_schedule')})")
    group.add_argument("--step-size", type=positive_int, metavar="N",
                       help="StepLR's step_size in epochs, with --lr-schedule step (default: 5)")
    group.add_argument("--gamma", type=non_negative_float, metavar="X",
                       help="StepLR's gamma, with --lr-schedule step (default: 0.1)")


def add_preset_option(parser: argparse.ArgumentParser, default: str = DEFAULT_PRESET) -> None:
    """--preset: notebook (the original notebook's run), default (a ReLU net that beats it) or
    lenet (a LeNet-5 style CNN)."""
    parser.add_argument("--preset", choices=PRESET_NAMES, default=None,
                        help="the run the other flags change. " + "; ".join(map(_preset_summary, PRESET_NAMES))
                             + f" (default: {default})")


# -- checks that end in a usage error ---------------------------------------------------------
def engine_spec(engine: str | None) -> tuple[str, str]:
    """(the engine to load, the flag it came from): --engine, else $BACKPROP_ENGINE, else numpy."""
    if engine:
        return engine, "--engine"
    variable = os.environ.get(ENGINE_VARIABLE)
    if variable:
        return variable, f"--engine (or {ENGINE_VARIABLE})"
    return DEFAULT_ENGINE, "--engine"


def open_engine(parser: argparse.ArgumentParser, spec: str, device: str, flag: str = "--engine") -> Engine:
    """load_engine, with any EngineError (and an unavailable CUDA) as a usage error naming ``flag``."""
    try:
        engine = load_engine(spec, device)
    except EngineError as error:
        guess = close_match(spec, list(ENGINES)) if str(error).startswith("unknown engine") else None
        parser.error(f"argument {flag}: {error}" + (f"; did you mean {guess!r}?" if guess else ""))
    check_device_available(parser, device)
    return engine


def check_device_available(parser: argparse.ArgumentParser, device: str) -> None:
    """A usage error when ``device`` is a CUDA device and torch sees no GPU."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error(f"--device {device}: CUDA is not available on this machine (torch sees no GPU)")


def writable_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be an output directory, or None if it can (it is created when missing)."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} exists and is not a directory"
    missing = missing_dirs(path)
    probe = os.path.dirname(missing[-1]) if missing else os.path.abspath(path)  # the nearest existing
    if not os.path.isdir(probe):
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def check_writable_dir(parser: argparse.ArgumentParser, flag: str, path: str) -> None:
    """A usage error naming ``flag`` unless ``path`` can be (or become) a writable directory."""
    problem = writable_dir_problem(path)
    if problem:
        parser.error(f"{flag}: {problem}")


def check_output_file(parser: argparse.ArgumentParser, flag: str, path: str) -> None:
    """A usage error naming ``flag`` unless ``path`` can be written as a file: not a directory
    (nor spelled as one), in a directory that exists and is writable."""
    if path.endswith(os.sep) or os.path.isdir(path):
        parser.error(f"{flag} {path}: is a directory; name the file to write")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        parser.error(f"{flag} {path}: the directory {parent} does not exist")
    if not os.path.isdir(parent):
        parser.error(f"{flag} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        parser.error(f"{flag} {path}: the directory {parent} is not writable")


def limit_error(limit: int | None, samples: int) -> str | None:
    """The error when --limit ``limit`` asks for more than the ``samples`` the training split holds;
    None when it fits (or no limit was given)."""
    if limit is not None and limit > samples:
        return f"--limit {limit} exceeds the {samples} training samples"
    return None


def check_data_dir(parser: argparse.ArgumentParser, path: str | None) -> None:
    """A usage error when --data-dir names something that is not a directory."""
    if path and os.path.exists(path) and not os.path.isdir(path):
        parser.error(f"--data-dir {path}: not a directory (give the folder that holds <Dataset>/raw/)")


def claim_out(parser: argparse.ArgumentParser, out: str | None, stem: str, own_run: bool = False) -> RunDir:
    """The run directory a command writes into, claimed (see backprop.rundir): ``out`` when
    given (new or empty, or with ``own_run`` the run's own), else a new ``runs/<stem>``
    (``-2``, ``-3``, ... when taken). A usage error naming --out when it cannot be claimed."""
    try:
        if out is None:
            return claim_new("runs", stem)
        check_writable_dir(parser, "--out", out)
        return claim(out, own_run=own_run)
    except RunDirError as error:
        parser.error(f"--out: {error}")


def default_stem(kind: str) -> str:
    """``<kind>-YYYYmmdd-HHMMSS``: the start of compare's and bench's default directory names."""
    return f"{kind}-{timestamp()}"


def fail(message: str, code: int = EXIT_DATA) -> int:
    """Print ``backprop: error: <message>`` to stderr and return ``code`` (for ``return fail(...)``)."""
    print(f"backprop: error: {message}", file=sys.stderr)
    return code


# Appended to a data error when the directory came from the run being continued or evaluated.
REMEMBERED_DATA_DIR = " (the data directory the run was trained from; pass --data-dir to use another)"


def require_clipping(parser: argparse.ArgumentParser, engines: Sequence[Engine], max_norm: float | None,
                     flag: str) -> None:
    """A usage error naming ``flag`` when the run clips (``max_norm`` not None) and an engine has
    no clip_grad_norm_ (optional in the engine protocol)."""
    if max_norm is None:
        return
    from ..training import gradient_clipper

    for engine in engines:
        try:
            gradient_clipper(engine)
        except EngineError as error:
            parser.error(f"argument {flag}: {error}")


def require_optimizer(parser: argparse.ArgumentParser, engines: Sequence[Any], optimizer: str, flag: str) -> None:
    """A usage error naming ``flag`` unless every engine provides ``optimizer``."""
    for engine in engines:
        if not engine.has_optimizer(optimizer):
            parser.error(f"argument {flag}: engine {engine.spec!r} has no optimizer {optimizer!r}")
