"""`backprop`: train, evaluate, export, compare and bench, with any engine.

Exit status: 0 done, 1 a data or checkpoint problem, 2 a usage error (before any data is
read), 3 training diverged, 130 interrupted by Ctrl-C (a checkpoint was saved).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .config import PRESETS, TrainConfig
from .engines import ENGINES, OPTIMIZERS
from .schedules import SCHEDULES

ACTIVATION_NAMES = ("identity", "relu", "sigmoid", "tanh")
INIT_NAMES = ("xavier_normal", "xavier_uniform", "he_normal", "torch_default")
DATASET_NAMES = ("mnist", "fashion-mnist")
EXIT_DATA = 1


# -- argument types: each rejects a bad value with argparse's usage error (exit 2) ----------
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def width_list(text: str) -> list[int]:
    """'64,64' -> [64, 64]; 'none' -> [] (a linear classifier)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [positive_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive widths such as 64,64, got {text!r}"
        ) from None


def _writable_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be a run directory, or None if it can (created when missing)."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} exists and is not a directory"
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backprop", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_args(p, defaults=True):
        p.add_argument("--dataset", choices=DATASET_NAMES, default="mnist" if defaults else None,
                       help="which MNIST-format dataset (default mnist)")
        p.add_argument("--data-dir", default="./data" if defaults else None,
                       help="root holding <Dataset>/raw/ (default ./data; downloaded there if absent)")

    def engine_arg(p):
        p.add_argument("--engine", choices=tuple(ENGINES), default=os.environ.get("BACKPROP_ENGINE"),
                       help="numpy | torch | autograd (default: $BACKPROP_ENGINE or numpy)")
        p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                       help="torch engines only: cpu (default) or cuda")

    train = sub.add_parser("train", help="train an MLP on MNIST-format data")
    engine_arg(train)
    data_args(train, defaults=False)
    train.add_argument("--preset", choices=tuple(PRESETS), default=None,
                       help="notebook (the original notebook's run) or default (a ReLU net that beats it)")
    train.add_argument("--epochs", type=positive_int)
    train.add_argument("--batch-size", type=positive_int)
    train.add_argument("--optimizer", choices=tuple(OPTIMIZERS))
    train.add_argument("--lr", type=non_negative_float)
    train.add_argument("--momentum", type=non_negative_float)
    train.add_argument("--nesterov", action="store_true", default=None)
    train.add_argument("--weight-decay", type=non_negative_float)
    train.add_argument("--lr-schedule", choices=SCHEDULES,
                       help="per-epoch schedule: constant, step (StepLR) or cosine (CosineAnnealingLR)")
    train.add_argument("--step-size", type=positive_int, help="StepLR's step_size in epochs (default 5)")
    train.add_argument("--gamma", type=non_negative_float, help="StepLR's gamma (default 0.1)")
    train.add_argument("--hidden", type=width_list, help="hidden widths, e.g. 64,64")
    train.add_argument("--activation", choices=ACTIVATION_NAMES)
    train.add_argument("--init", choices=INIT_NAMES)
    train.add_argument("--dtype", choices=("float32", "float64"))
    train.add_argument("--seed", type=int)
    train.add_argument("--limit", type=positive_int, help="train on the first N samples only")
    train.add_argument("--out", help="run directory (default runs/<timestamp>-<engine>)")
    train.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint (any engine's)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate = sub.add_parser("evaluate", help="test loss, accuracy and confusion matrix of a checkpoint")
    evaluate.add_argument("checkpoint")
    engine_arg(evaluate)
    data_args(evaluate, defaults=False)
    evaluate.add_argument("--out", help="where confusion.png goes (default: beside the checkpoint)")

    export = sub.add_parser("export", help="write a checkpoint as a torch.nn.Sequential state dict")
    export.add_argument("checkpoint")
    export.add_argument("--to", required=True, metavar="MODEL_PT")

    from . import bench, compare

    bench.add_parser(sub)
    compare.add_parser(sub)
    return parser


# Training flags (TrainConfig fields of the same name) that make up a run's configuration;
# resume must not change them.
CONFIG_FLAGS = (
    "hidden", "activation", "init", "dtype", "seed", "batch_size", "optimizer", "lr", "momentum", "nesterov",
    "weight_decay", "lr_schedule", "step_size", "gamma", "limit", "dataset",
)


def train_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    preset = args.preset or "default"
    values = {**TrainConfig().__dict__, **PRESETS[preset], "preset": preset}
    for flag in CONFIG_FLAGS:
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    if args.epochs is not None:
        values["epochs"] = args.epochs
    if values["optimizer"] != "sgd" and args.momentum is None:
        values["momentum"] = 0.0  # the preset's SGD momentum means nothing to Adam
    config = TrainConfig(**values)
    if config.nesterov and config.momentum <= 0:
        parser.error("--nesterov needs a --momentum above 0")
    if config.optimizer != "sgd" and (args.momentum or args.nesterov):
        parser.error(f"--momentum/--nesterov apply to --optimizer sgd, not {config.optimizer}")
    return config


def check_device(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.device == "cuda":
        if args.engine == "numpy":
            parser.error("--device cuda needs a torch engine (--engine torch or autograd); "
                         "the numpy engine runs on the CPU only")
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: CUDA is not available on this machine (torch sees no GPU)")


def fail(message: str, code: int = EXIT_DATA) -> int:
    print(f"backprop: error: {message}", file=sys.stderr)
    return code


def cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .checkpoint import CheckpointError, load_checkpoint

    args.engine = args.engine or "numpy"
    if args.engine not in ENGINES:
        parser.error(f"argument --engine (or BACKPROP_ENGINE): invalid choice {args.engine!r} "
                     f"(choose from {', '.join(ENGINES)})")
    check_device(args, parser)
    checkpoint = None
    if args.resume:
        try:
            checkpoint = load_checkpoint(args.resume)
        except CheckpointError as error:
            return fail(str(error))
        config = TrainConfig.from_json(checkpoint.meta["config"])
        for flag in CONFIG_FLAGS:
            given = getattr(args, flag)
            if given is not None and given != getattr(config, flag):
                parser.error(f"--{flag.replace('_', '-')} {given} conflicts with the checkpoint's "
                             f"{getattr(config, flag)}: a resumed run keeps its configuration")
        if args.preset is not None:
            parser.error("--preset cannot be combined with --resume (the checkpoint holds the configuration)")
        if args.epochs is not None:
            config.epochs = args.epochs
        out = args.out or os.path.dirname(os.path.abspath(args.resume))
    else:
        config = train_config(args, parser)
        out = args.out or os.path.join("runs", f"{time.strftime('%Y%m%d-%H%M%S')}-{args.engine}")
    problem = _writable_dir_problem(out)
    if problem:
        parser.error(f"--out: {problem}")
    existing = os.path.join(out, "checkpoint.npz")
    if checkpoint is None and os.path.exists(existing):
        parser.error(f"--out {out} already holds a run ({existing}); continue it with --resume {existing}, "
                     "or choose another --out (nothing was overwritten)")
    data_dir = args.data_dir or "./data"

    from data import DataError, load_dataset

    try:
        dataset = load_dataset(config.dataset, data_dir, dtype=config.dtype)
    except DataError as error:
        return fail(str(error))
    if config.limit is not None and config.limit > len(dataset.train_y):
        return fail(f"--limit {config.limit} exceeds the {len(dataset.train_y)} training samples")

    from .engines import load_engine
    from .trainer import EXIT_DIVERGED, EXIT_INTERRUPTED, Trainer, TrainingDiverged, TrainingInterrupted

    engine = load_engine(args.engine, args.device)
    try:
        trainer = Trainer(config, engine, dataset, out, quiet=args.quiet, resume=checkpoint)
    except (ValueError, TypeError) as error:
        return fail(f"{args.resume}: cannot resume: {error}" if checkpoint else str(error))
    if checkpoint is not None:
        p = trainer.progress
        print(f"resuming {args.resume} (written by the {checkpoint.meta['engine']} engine) at epoch "
              f"{p.epoch + 1}, batch {p.step}, with the {engine.name} engine")
    if trainer.progress.epoch >= config.epochs:
        print(f"nothing to do: the checkpoint already finished {trainer.progress.epoch} epochs "
              f"(pass --epochs N with N > {trainer.progress.epoch} to train on)")
        return 0
    print(f"training {config.sizes} ({config.activation}, {config.dtype}) on {config.dataset} "
          f"with the {engine.name} engine -> {out}")
    try:
        trainer.run()
    except TrainingDiverged as error:
        return fail(str(error), EXIT_DIVERGED)
    except TrainingInterrupted as error:
        print(f"\n{error}", file=sys.stderr)
        print(f"resume with: backprop train --resume {trainer.checkpoint_path} --engine {engine.name}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"done: {os.path.join(out, 'metrics.csv')}, {os.path.join(out, 'curves.png')}, "
          f"{trainer.checkpoint_path}")
    return 0


def cmd_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import numpy as np

    from .checkpoint import CheckpointError, load_checkpoint

    args.engine = args.engine or "numpy"
    check_device(args, parser)
    try:
        checkpoint = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        return fail(str(error))
    config = TrainConfig.from_json(checkpoint.meta["config"])
    dataset_name = args.dataset or config.dataset
    out = args.out or os.path.dirname(os.path.abspath(args.checkpoint))
    problem = _writable_dir_problem(out)
    if problem:
        parser.error(f"--out: {problem}")

    from data import DataError, load_dataset

    try:
        dataset = load_dataset(dataset_name, args.data_dir or "./data", dtype=config.dtype)
    except DataError as error:
        return fail(str(error))
    from .engines import load_engine
    from .plots import plot_confusion
    from .trainer import evaluate

    engine = load_engine(args.engine, args.device)
    net = engine.build_net(config.sizes, config.activation, config.init, config.seed, config.dtype)
    net.load_state_dict(checkpoint.params)
    loss, accuracy, predictions = evaluate(engine, net, dataset.test_x, dataset.test_y)
    matrix = np.zeros((10, 10), np.int64)
    np.add.at(matrix, (dataset.test_y, predictions), 1)
    print(f"{args.checkpoint} on {dataset_name} test ({len(dataset.test_y)} images), {engine.name} engine:")
    print(f"test loss {loss:.4f}  test accuracy {accuracy:.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print("      " + " ".join(f"{j:>5}" for j in range(10)))
    for i in range(10):
        print(f"{i:>5} " + " ".join(f"{matrix[i, j]:>5}" for j in range(10)))
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "confusion.png")
    plot_confusion(matrix, path, title=f"{dataset_name} test, accuracy {accuracy:.4f}")
    print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .checkpoint import CheckpointError, load_checkpoint
    from .export import export_torch

    try:
        checkpoint = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        return fail(str(error))
    problem = _writable_dir_problem(os.path.dirname(os.path.abspath(args.to)))
    if problem:
        parser.error(f"--to: {problem}")
    code = export_torch(checkpoint, args.to)
    print(f"wrote {args.to}: load it with\n{code}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    # Non-finite values are detected and reported by the engines themselves (with where and
    # what to do); NumPy's own RuntimeWarnings about them would only add noise before that.
    np.seterr(all="ignore")
    parser = build_parser()
    args = parser.parse_args(argv)
    command = {"train": cmd_train, "evaluate": cmd_evaluate, "export": cmd_export}.get(args.command)
    if command is None:
        from . import bench, compare

        command = {"bench": bench.run, "compare": compare.run}[args.command]
    try:
        return command(args, parser)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
