"""`backprop train`: train a network (an MLP or a layer stack) on MNIST-format data, or resume any
engine's checkpoint."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from typing import Any

from engine_core.specs import LayerSpec, as_network, mlp, mlp_of

from .. import gradflow
from .. import threads as gemm_threads
from ..architecture import format_layers
from ..checkpoint import CHECKPOINT_NAME, Checkpoint, CheckpointError, checkpoint_path, load_checkpoint
from ..config import (
    CLASSES,
    DEFAULT_PRESET,
    IN_FEATURES,
    NETWORK_FLAGS,
    ConfigError,
    TrainConfig,
    new_config,
)
from ..datasets import DataError, load_dataset
from ..engines import Engine, EngineError
from ..gemms import gemm_library
from ..rundir import RunDir, timestamp
from ..threads import AUTO, ThreadChoice, apply_threads, training_threads
from ..training import Trainer, TrainingDiverged, TrainingInterrupted
from . import hints
from .options import (
    DEFAULT_DATA_DIR,
    DEFAULT_ENGINE,
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    REMEMBERED_DATA_DIR,
    add_data_options,
    add_engine_options,
    add_model_options,
    add_optimizer_options,
    add_preset_option,
    check_data_dir,
    claim_out,
    engine_spec,
    fail,
    from_preset,
    limit_error,
    open_engine,
    positive_int,
    require_clipping,
    require_optimizer,
)
from .threads import AUTO_RULE_HELP, add_threads_option, blas_threads, warn_oversubscribed

# Training flags (TrainConfig fields of the same name) that make up a run's configuration;
# resume must not change them.
CONFIG_FLAGS = (
    "init", "dtype", "seed", "batch_size", "optimizer", "lr", "momentum", "nesterov",
    "weight_decay", "lr_schedule", "step_size", "gamma", "limit", "dataset", "clip_grad_norm",
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `train` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser(
        "train", help="train an MLP or a layer stack on MNIST-format data (or resume a run)",
        description="Train a network, an MLP or a stack of layers (--layers, --preset lenet, lstm or gru): the "
                    "--preset's "
                    "run, changed by the flags given. A resumed run (--resume) keeps "
                    "its configuration, dataset and data directory, and refuses flags that would change them; "
                    "--epochs sets a new total, and --engine, --device, --data-dir, --out and --quiet apply to "
                    "the session that resumes.")
    add_engine_options(p)
    add_data_options(p, dataset_help="which MNIST-format dataset (default: mnist; on --resume: the run's)",
                     data_dir_help="the folder holding <Dataset>/raw/ (the four IDX files) or the legacy "
                                   "<Dataset>/processed/, e.g. ../shared/datasets for "
                                   "../shared/datasets/FashionMNIST/raw/ (default: ./data, downloaded there if "
                                   "absent and the network allows; on --resume: the folder the run was "
                                   "trained from)")
    add_preset_option(p)
    p.add_argument("--epochs", type=positive_int, metavar="N",
                   help=f"epochs to train (default: {from_preset('epochs')}; on --resume: the new total, "
                        "default the run's)")
    add_model_options(p, dtype_default=None, dtype_help="(default: float32)")
    add_optimizer_options(p)
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="train on the first N training samples only (default: all of them)")
    p.add_argument("--out", metavar="DIR",
                   help="a new (or empty) run directory, created with its parents (default: "
                        "runs/<date>-<time>-<engine>, with -2, -3, ... added when that name is taken; on "
                        "--resume: the checkpoint's own directory)")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue a run: its checkpoint.npz or its run directory, any engine's (default: a new run)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (default: bars on stderr when it is a terminal, none in a pipe or file)")
    p.add_argument("--track-gradients", action="store_true",
                   help="also write gradients.csv and gradients.png: per layer and epoch, the norms of the weight "
                        "gradient, of the delta dL/dz and of the update relative to the weight, each the mean over "
                        "the epoch's steps (default: off, at no cost; a run that tracks keeps tracking when "
                        "resumed, and on --resume of one that did not, tracking starts there)")
    add_threads_option(p, f"{AUTO_RULE_HELP}; on --resume: the count the run recorded", default=None)
    return p


def train_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    """A new run's configuration: the preset, overridden by the flags given (config.new_config);
    usage errors naming the flag for combinations that make no sense."""
    flags = {flag: getattr(args, flag) for flag in (*NETWORK_FLAGS, *CONFIG_FLAGS)}
    try:
        return new_config(args.preset, epochs=args.epochs, **flags)
    except ConfigError as error:
        parser.error(str(error))


def resumed_config(args: argparse.Namespace, parser: argparse.ArgumentParser, checkpoint: Checkpoint) -> TrainConfig:
    """The checkpoint's configuration, with only --epochs changed; a usage error for any flag
    that would change the rest."""
    config = checkpoint.config
    given = {flag: getattr(args, flag) for flag in NETWORK_FLAGS if getattr(args, flag) is not None}
    if given:
        network = _resumed_network(config.network, **given)
        if network != config.network:
            spelled = " ".join(spell_flag(flag, value) for flag, value in given.items())
            parser.error(f"{spelled} conflicts with the checkpoint ({spell_network(config.network)}): "
                         "a resumed run keeps its configuration")
    for flag in CONFIG_FLAGS:
        given = getattr(args, flag)
        meant = None if flag == "clip_grad_norm" and given == math.inf else given  # --clip-grad-norm none
        if given is not None and meant != getattr(config, flag):
            parser.error(f"{spell_flag(flag, given)} conflicts with the checkpoint ({spell_stored(flag, config)}): "
                         "a resumed run keeps its configuration")
    if args.preset is not None:
        parser.error("--preset cannot be combined with --resume (the checkpoint holds the configuration)")
    if args.epochs is not None:
        config.epochs = args.epochs  # t_max stays: the schedule keeps the period it was created with
    return config


def spell_flag(field: str, value: Any) -> str:
    """``field`` = ``value`` as the command line spells it: "--hidden 32,16", "--hidden none",
    "--layers 'flatten, linear(784, 10)'", "--nesterov", "--limit 2000"."""
    flag = f"--{field.replace('_', '-')}"
    if isinstance(value, bool):
        return flag if value else f"no {flag}"
    if field == "layers":
        return f"{flag} '{format_layers(value)}'"
    if field == "hidden":
        return f"{flag} {','.join(map(str, value)) or 'none'}"
    if field == "clip_grad_norm" and value == math.inf:
        return f"{flag} none"
    return f"{flag} {value}"


def network_flags(network: LayerSpec) -> list[tuple[str, Any]]:
    """The flags that give ``network``: --hidden and --activation for an MLP (no --activation
    without hidden layers), --layers for any other network."""
    found = mlp_of(network)
    if found is None or found[0][0] != IN_FEATURES or found[0][-1] != CLASSES:
        return [("layers", network)]
    sizes, activation = found
    hidden = sizes[1:-1]
    return [("hidden", hidden), ("activation", activation)] if hidden else [("hidden", hidden)]


def spell_network(network: LayerSpec) -> str:
    """The network in the command line's words: "--hidden 256,128 --activation relu" or
    "--layers '...'"."""
    return " ".join(spell_flag(flag, value) for flag, value in network_flags(network))


def _resumed_network(network: LayerSpec, layers: Any = None, hidden: list[int] | None = None,
                     activation: str | None = None) -> LayerSpec | None:
    """The network --layers, --hidden and --activation describe on --resume of ``network`` (to
    compare with it): --layers as given; --hidden/--activation as changes to the run's MLP. None
    where the flags describe no network (both kinds at once, an MLP flag for a network that is
    no MLP, an activation without hidden layers): they conflict with any checkpoint."""
    found = mlp_of(network)
    if layers:  # the flag was given (a network is never empty)
        return as_network(layers) if hidden is None and activation is None else None
    if found is None:
        return None
    sizes, stored = found
    widths = sizes[1:-1] if hidden is None else hidden
    if activation is not None and not widths:
        return None
    return mlp([IN_FEATURES, *widths, CLASSES], activation or stored)


def spell_stored(field: str, config: TrainConfig) -> str:
    """The checkpoint's ``field`` in the command line's words, for a conflict message: a value
    the run never set is said as such ("all training samples, no --limit")."""
    value = getattr(config, field)
    if field == "limit" and value is None:
        return "all training samples, no --limit"
    if field == "clip_grad_norm" and value is None:
        return "no gradient clipping, no --clip-grad-norm"
    return spell_flag(field, value)


def new_run_command(config: TrainConfig, engine: Engine, data_dir: str, out: str | None = None,
                    **changes: Any) -> str:
    """The `backprop train` command that starts ``config``'s run afresh (with ``changes`` to its
    fields, such as a smaller lr, and into ``out`` when given), naming only what differs from the
    preset's defaults."""
    config = TrainConfig(**{**config.__dict__, **changes})
    base = new_config(config.preset, optimizer=config.optimizer)
    values: list[tuple[str, object]] = [("--dataset", config.dataset), ("--data-dir", data_dir)]
    if config.preset != DEFAULT_PRESET:
        values.append(("--preset", config.preset))
    if engine.spec != DEFAULT_ENGINE or os.environ.get("BACKPROP_ENGINE"):
        values.append(("--engine", engine.spec))
    if engine.device != "cpu":
        values.append(("--device", engine.device))
    if config.network != base.network:
        for flag, value in network_flags(config.network):
            shown = format_layers(value) if flag == "layers" else ",".join(map(str, value)) or "none" \
                if flag == "hidden" else value
            values.append((f"--{flag}", shown))
    if config.network != base.network and "--layers" in dict(values) and config.init == "torch_default":
        base = TrainConfig(**{**base.__dict__, "init": "torch_default"})  # --layers implies it
    for field in ("epochs", *CONFIG_FLAGS):
        if field in ("dataset",):
            continue
        value = getattr(config, field)
        if value != getattr(base, field):
            values.append((f"--{field.replace('_', '-')}", value))
    values.append(("--out", out))
    return hints.command("train", *hints.flags(values))


def resume_command(checkpoint: str, engine: Engine, epochs: int | None = None) -> str:
    """The `backprop train --resume` command that continues ``checkpoint`` with ``engine``."""
    values: list[tuple[str, object]] = [("--resume", checkpoint), ("--engine", engine.spec), ("--epochs", epochs)]
    if engine.device != "cpu":
        values.append(("--device", engine.device))
    return hints.command("train", *hints.flags(values))


def finished_hint(resume: str, config: TrainConfig, engine: Engine, data_dir: str, done: int) -> str:
    """What `train --resume` of a finished run says: how to train on in a way that helps. More
    epochs of the same run while its schedule still has rates to give (constant, step, or a
    cosine whose T_max lies ahead: up to T_max); a new run annealing over twice the epochs once a
    cosine schedule has reached lr 0 (stepped on, it would train at lr 0 and then rising again)."""
    epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    of = f"of {epochs}" if done <= config.epochs else f"epochs, more than the {epochs} asked for"
    finished = f"nothing to do: {resume} already finished {done} {of}."
    t_max = config.t_max or config.epochs
    if config.lr_schedule != "cosine" or t_max > done:
        more = t_max if config.lr_schedule == "cosine" else done + 5
        return f"{finished} To train on, raise --epochs: {resume_command(resume, engine, epochs=more)}"
    ahead = ("more epochs of this run would train at lr 0 and then at rising rates" if done == t_max else
             f"its epochs {t_max + 1}-{done} already trained at lr 0 and then at rising rates")
    return (f"{finished} Its cosine schedule ended with epoch {t_max}: {ahead} (torch's CosineAnnealingLR stepped "
            "past T_max), which undoes some of what was learned. To train longer, start a new run that anneals over "
            "more epochs (this run is kept): "
            f"{new_run_command(config, engine, data_dir, epochs=2 * done, t_max=2 * done)}")


def _discarded(run_dir: RunDir, resumed: str | None) -> str:
    """Delete a fresh run directory that ends without a checkpoint (a run that diverged in its
    first epoch: nothing in it to resume, and it would block a rerun with the same --out); the
    sentence that says so (and that the checkpoint it ``resumed`` from is untouched), or '' when
    it was not this run's to delete."""
    names = run_dir.discard()
    if not names:
        return ""
    kept = f" ({resumed}, which it resumed from, is unchanged)" if resumed else ""
    return f" Removed what the run wrote ({', '.join(names)}) from {run_dir.path}: nothing to resume there{kept}."


def diverged_hint(config: TrainConfig, engine: Engine, data_dir: str, lr: float, out: str | None = None) -> str:
    """How to start a diverged run again: a learning rate ten times smaller (a momentum that can
    only diverge, 1 or more, is refused when a run is created: config.new_config), into ``out``
    when given (the --out its removed files had blocked)."""
    return f"to start again with a smaller learning rate: {new_run_command(config, engine, data_dir, out, lr=lr / 10)}"


def _engine(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Engine:
    spec, flag = engine_spec(args.engine)
    return open_engine(parser, spec, args.device, flag)


def _claim(args: argparse.Namespace, parser: argparse.ArgumentParser, engine: Engine,
           resume: str | None) -> RunDir:
    """The run directory, claimed: --out, or the checkpoint's own directory on --resume, or a new
    runs/<date>-<time>-<engine>."""
    if resume is None:
        if args.out is None:
            return claim_out(parser, None, f"{timestamp()}-{engine.name}")
        existing = os.path.join(args.out, CHECKPOINT_NAME)
        if os.path.isfile(existing):
            parser.error(f"--out {args.out} already holds a run ({existing}); continue it with: "
                         f"{hints.command('train', '--resume', existing)}, or choose another --out, or to start "
                         f"over delete it first (rm -r -- {shlex.quote(args.out)}) (nothing was overwritten)")
        return claim_out(parser, args.out, "")
    own = os.path.dirname(os.path.abspath(resume))
    out = args.out or os.path.dirname(resume) or "."
    return claim_out(parser, out, "", own_run=os.path.abspath(out) == own)


def _describe(config: TrainConfig, engine: Engine, data_dir: str, threads: ThreadChoice) -> str:
    limit = f", first {config.limit} sample{'s' if config.limit != 1 else ''}" if config.limit else ""
    pool = "BLAS" if gemm_library(engine) == "numpy" else "torch"
    return (f"{config.network_summary()} ({config.dtype}), {config.optimizer_summary()}, batch {config.batch_size}, "
            f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}; {config.dataset} from {data_dir}{limit}; "
            f"the {engine.name} engine, {threads.describe(pool)}")


def session_threads(args: argparse.Namespace, config: TrainConfig, checkpoint: Checkpoint | None) -> ThreadChoice:
    """The GEMM thread count of this session and why: --blas-threads (auto: threads.auto_threads
    under the machine's load now), or on --resume without it the count the run recorded
    (auto for files that predate the record). Prints one stderr line when an explicit count
    departs from the recorded one (float32 results then differ from the uninterrupted run), and
    one when it exceeds the cores."""
    recorded = checkpoint.blas_threads if checkpoint is not None else None
    if checkpoint is not None and args.blas_threads is None:
        choice = ThreadChoice(recorded, "the count the run recorded") if recorded is not None \
            else training_threads(AUTO, config, gemm_threads.current_load())
    else:
        choice = training_threads(blas_threads(args), config, gemm_threads.current_load())
        if recorded is not None and choice.count != recorded:
            print(f"train: note: --blas-threads gives {choice.count} thread{'s' if choice.count != 1 else ''} where "
                  f"the run trained on {recorded}: {config.dtype} numbers may differ from the uninterrupted run "
                  "(leave --blas-threads out to reuse the recorded count)", file=sys.stderr)
    warn_oversubscribed(choice.count, "train")
    return choice


def _warn_idle_epochs(trainer: Trainer, config: TrainConfig, engine: Engine, data_dir: str) -> None:
    """One stderr line when epochs of this session would train at learning rate 0 (a finished
    cosine run continued past its T_max, fixed when the run was created)."""
    idle = trainer.idle_epochs()
    if not idle:
        return
    epochs = f"epoch {idle[0]}" if len(idle) == 1 else f"epochs {', '.join(map(str, idle))}"
    t_max = config.t_max or config.epochs
    print(f"train: warning: {epochs} will train at lr 0 and update no weight: the cosine schedule's T_max was fixed "
          f"at {t_max} epoch{'s' if t_max != 1 else ''} when the run was created. Past T_max torch's "
          f"CosineAnnealingLR does not stop: it rises again, with lr 0 at epochs {t_max + 1}, {3 * t_max + 1}, "
          "and so on. To anneal over "
          f"{config.epochs} epoch{'s' if config.epochs != 1 else ''} instead, start a new run: "
          f"{new_run_command(config, engine, data_dir, epochs=config.epochs)}", file=sys.stderr)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Train (or resume); returns the exit status."""
    engine = _engine(args, parser)
    check_data_dir(parser, args.data_dir)
    checkpoint = None
    resume = None
    if args.resume:
        try:
            resume = checkpoint_path(args.resume)
            checkpoint = load_checkpoint(resume)
        except CheckpointError as error:
            return fail(str(error))
        config = resumed_config(args, parser, checkpoint)
    else:
        config = train_config(args, parser)
    require_optimizer(parser, [engine], config.optimizer, "--engine")
    require_clipping(parser, [engine], config.clip_grad_norm, "--engine")
    data_dir = args.data_dir or (checkpoint.data_dir if checkpoint else None) or DEFAULT_DATA_DIR
    if checkpoint is not None and resume is not None and checkpoint.progress.epoch >= config.epochs:
        print(finished_hint(resume, config, engine, data_dir, checkpoint.progress.epoch))
        return 0

    with _claim(args, parser, engine, resume) as run_dir:
        out = run_dir.path
        try:
            dataset = load_dataset(config.dataset, data_dir, dtype=config.dtype)
        except DataError as error:
            remembered = checkpoint is not None and not args.data_dir and checkpoint.data_dir
            return fail(f"{error}{REMEMBERED_DATA_DIR if remembered else ''}")
        samples = len(dataset.train_y) if config.limit is None else min(config.limit, len(dataset.train_y))
        if refused := limit_error(config.limit, len(dataset.train_y)):
            return fail(refused)
        if checkpoint is None and config.batch_size > samples:  # (a resumed run's data must match its own)
            parser.error(f"--batch-size {config.batch_size} is larger than the {samples} training samples: every "
                         f"epoch would be one short batch; give --batch-size {samples} or less")
        threads = session_threads(args, config, checkpoint)
        try:
            trainer = Trainer(config, engine, dataset, out, quiet=args.quiet, resume=checkpoint, data_dir=data_dir,
                              track_gradients=True if args.track_gradients else None,
                              blas_threads=threads.count)
        except EngineError as error:  # the engine lacks a layer of the network
            parser.error(f"argument --engine: {error}")
        except (ValueError, TypeError) as error:
            return fail(f"{resume}: cannot resume: {error}" if checkpoint else str(error))
        if checkpoint is not None:
            p = trainer.progress
            print(f"resuming {resume} (written by the {checkpoint.engine} engine) at epoch "
                  f"{p.epoch + 1}, batch {p.step}, with the {engine.name} engine")
            if args.track_gradients and checkpoint.gradients is None:
                partial = " (that epoch's rows average only its steps from here: their steps column says how many)" \
                    if p.step else ""
                print(f"--track-gradients: the run did not track gradients before; tracking starts at epoch "
                      f"{p.epoch + 1}, batch {p.step}{partial}, and continues on every later resume")
            _warn_idle_epochs(trainer, config, engine, data_dir)
        apply_threads(gemm_library(engine), threads.count)  # process-wide, before the first step
        print(f"training {_describe(config, engine, data_dir, threads)} -> {out}")
        try:
            trainer.run()
        except TrainingDiverged as error:
            removed = "" if os.path.exists(trainer.checkpoint_path) else _discarded(run_dir, resume)
            hint = diverged_hint(config, engine, data_dir, error.lr, args.out if removed else None)
            return fail(f"{error}{removed}\n{hint}", EXIT_DIVERGED)
        except TrainingInterrupted as error:
            print(f"\n{error}", file=sys.stderr)
            print(f"resume with: {resume_command(trainer.checkpoint_path, engine)}", file=sys.stderr)
            return EXIT_INTERRUPTED
        tracked = f"{os.path.join(out, gradflow.CSV_NAME)}, {os.path.join(out, gradflow.PNG_NAME)}, " \
            if trainer.gradients is not None else ""
        print(f"done: {os.path.join(out, 'metrics.csv')}, {os.path.join(out, 'curves.png')}, {tracked}"
              f"{trainer.checkpoint_path}")
        return 0
