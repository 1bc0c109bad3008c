"""The engine-agnostic training loop: the same code drives numpy_net, torch_net, autograd and
any module that speaks the engine protocol."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import json
import math
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from engine_core.specs import leaf_shapes, paths_of

from .architecture import check_trainable, evaluation_chunk, image_view, input_shape
from .checkpoint import CHECKPOINT_NAME, Checkpoint, checkpoint_meta, save_checkpoint
from .config import TrainConfig, preset_network
from .datasets import Dataset
from .engines import Engine, EngineError, inference_mode, layer_at, set_mode, training_numerics
from .fileio import atomic_write_text
from .gradflow import CSV_NAME as GRADIENTS_CSV
from .gradflow import GradientTracker
from .plots import plot_curves
from .progress import CSV_COLUMNS, Progress
from .schedules import epoch_learning_rates

StepFunction = Callable[[Any, Any], tuple[float, int]]


def _check_finite_samples(part: str, x: np.ndarray) -> None:
    """Refuse data holding NaN or Inf before training starts (ValueError naming the sample and the
    pixel): a step would stop on it with NonFiniteError, and the loss blowing up would be blamed on
    the learning rate. IDX files hold uint8 and pass at no cost."""
    if x.dtype.kind != "f":
        return
    bad = ~np.isfinite(x)
    if bad.any():
        sample, *pixel = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"the {part} data holds NaN or Inf ({int(bad.sum())} values; the first in sample "
                         f"{sample}, pixel {pixel[0] if len(pixel) == 1 else tuple(pixel)}): clean the data; "
                         "no learning rate trains on it")


def _check_last_batch(network: Any, samples: int, batch_size: int) -> None:
    """Refuse an epoch whose last batch holds one sample when a batch norm would then see a single
    value per channel (train mode normalises by the batch's own statistics; torch refuses it too):
    ValueError naming the layer and the sizes that avoid it, before the run starts rather than at
    the end of its first epoch."""
    if samples % batch_size != 1 or samples == 1:
        return
    for path, spec, shape, _ in leaf_shapes(network, (1, *input_shape(network))):
        if spec.kind in ("batchnorm1d", "batchnorm2d") and math.prod(shape) // shape[1] <= 1:
            raise ValueError(
                f"the last batch of every epoch would hold 1 sample ({samples} samples, batch size {batch_size}), "
                f"and layer {path} {spec!r} needs more than one value per channel in train mode: give a "
                f"--batch-size that leaves a last batch of 2 or more, or --limit {samples - 1}")


class TrainingDiverged(Exception):
    """The loss became NaN or Inf; the message says where, and ``lr`` is the learning rate it
    happened at (what to lower)."""

    def __init__(self, message: str, lr: float) -> None:
        super().__init__(message)
        self.lr = lr


class TrainingInterrupted(Exception):
    """SIGINT: a checkpoint of the last completed step was written."""


def _accepts(function: Callable[..., Any], parameter: str) -> bool:
    try:
        return parameter in inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def step_backward(net: Any) -> Callable[[Any], Any]:
    """net.backward as a training step calls it: told that dL/dx is not needed when it takes
    ``input_grad`` (the first layer's input gradient is never used), as it is otherwise."""
    if not _accepts(net.backward, "input_grad"):
        return net.backward  # type: ignore[no-any-return]

    def backward(delta: Any, _backward: Callable[..., Any] = net.backward) -> Any:
        return _backward(delta, input_grad=False)

    return backward


def gradient_clipper(engine: Engine) -> Callable[[Any, float], float]:
    """The engine's ``clip_grad_norm_(net, max_norm)`` (torch.nn.utils.clip_grad_norm_'s rule;
    optional in engine_core.protocol); EngineError naming the engine when it has none."""
    clip = getattr(engine.module, "clip_grad_norm_", None)
    if not callable(clip):
        raise EngineError(f"engine {engine.spec!r} has no clip_grad_norm_ (needed for --clip-grad-norm; see "
                          "engine_core.protocol)")
    return clip  # type: ignore[no-any-return]


def make_step(engine: Engine, net: Any, optimizer: Any, loss_fn: Any,
              clip_grad_norm: float | None = None) -> StepFunction:
    """One training step as a closure: (x, y) in the engine's arrays -> (mean loss, correct predictions).

    The trainer, `backprop bench` and `backprop compare` all run exactly this. An engine that
    declares ACCUMULATES_GRADIENTS gets optimizer.zero_grad() before every backward; a backward
    that takes ``input_grad`` is told that dL/dx is not needed. With ``clip_grad_norm``, the
    engine's clip_grad_norm_(net, clip_grad_norm) runs between backward and the optimizer's step,
    as torch.nn.utils.clip_grad_norm_ is placed in a torch loop (EngineError, from
    gradient_clipper, for an engine without it).
    """
    forward, loss_forward, loss_backward = net.forward, loss_fn.forward, loss_fn.backward
    step, hits = optimizer.step, engine.argmax_hits
    backward = step_backward(net)
    if clip_grad_norm is not None:  # without it, step stays the optimizer's own: no call added
        clip, optimizer_step, max_norm = gradient_clipper(engine), optimizer.step, clip_grad_norm

        def clipped_step() -> None:
            clip(net, max_norm)
            optimizer_step()

        step = clipped_step

    if engine.traits.accumulates_gradients:
        zero_grad = optimizer.zero_grad

        def accumulating_step(x: Any, y: Any) -> tuple[float, int]:
            logits = forward(x)
            loss = loss_forward(logits, y)
            zero_grad()
            backward(loss_backward())
            step()
            return loss, hits(logits, y)

        return accumulating_step

    def train_step(x: Any, y: Any) -> tuple[float, int]:
        logits = forward(x)
        loss = loss_forward(logits, y)
        backward(loss_backward())
        step()
        return loss, hits(logits, y)

    return train_step


def build_network(engine: Engine, config: TrainConfig, training: bool = False) -> Any:
    """config's network on ``engine`` (EngineError naming a layer the engine lacks); ``training``
    adds the engine's TRAINING_KWARGS."""
    return engine.build_net(config.network, config.init, config.seed, config.dtype, training=training)


def evaluate(engine: Engine, net: Any, x: np.ndarray, y: np.ndarray,
             chunk: int = 10_000) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy in [0, 1], predictions (N,) int64) over a whole split, forward only,
    in eval mode (batch norm's running statistics, no dropout); the net's mode is restored after.

    x: (N, F) or (N, C, H, W) in the net's dtype, y: (N,) labels; fed in chunks of ``chunk``
    samples (architecture.evaluation_chunk bounds a convolutional net's memory). Raises the
    engine's NonFiniteError (a FloatingPointError) when the logits are not finite.
    """
    loss_fn = engine.loss()
    total, predictions = 0.0, np.empty(len(y), np.int64)
    dtype = x.dtype.name
    was_training = bool(getattr(net, "training", False))
    set_mode(net, False)
    try:
        with inference_mode():
            for start in range(0, len(y), chunk):
                xs = np.ascontiguousarray(x[start : start + chunk])
                ys = np.ascontiguousarray(y[start : start + chunk])
                logits = net.forward(engine.asarray(xs, dtype))
                total += loss_fn.forward(logits, engine.labels(ys)) * len(ys)
                predictions[start : start + len(ys)] = engine.to_numpy(logits).argmax(1)
    finally:
        if was_training:
            set_mode(net, True)
    return total / len(y), float(np.mean(predictions == y)), predictions


def metrics_csv(rows: list[dict[str, Any]]) -> str:
    """metrics.csv's text: CSV_COLUMNS (the metrics and the engine), one row per epoch (a value a
    row lacks, like the lr of a version 1 checkpoint, is left empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n", restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def curves_title(config: TrainConfig, engines: list[str], dataset: str) -> str:
    """curves.png's title: dataset, preset (when the run kept the preset's network), network, the
    engine of each epoch (``engines``, in epoch order; a resumed run that changed engine names
    which trained what), optimizer and learning rate."""
    spans: list[list[Any]] = []  # [engine, first epoch, last epoch]
    for epoch, name in enumerate(engines, start=1):
        if spans and spans[-1][0] == name:
            spans[-1][2] = epoch
        else:
            spans.append([name, epoch, epoch])
    if len(spans) <= 1:
        engine_text = f"{engines[0] if engines else '?'} engine"
    else:
        parts = [f"{name} (epoch {a})" if a == b else f"{name} (epochs {a}-{b})" for name, a, b in spans]
        engine_text = f"engines {' then '.join(parts)}: resumed with another engine"
    limit = f", first {config.limit} sample{'s' if config.limit != 1 else ''}" if config.limit else ""
    # The preset names the network only when the run kept its network (not --layers or --hidden).
    source = f"{config.preset} preset: " if config.network == preset_network(config.preset) else ""
    return (f"{dataset}{limit}, {source}{config.network_summary()}, {engine_text}\n"
            f"{config.optimizer_summary()}, batch {config.batch_size}")


class Trainer:
    """Trains ``config``'s network with ``engine`` on ``dataset``, writing into ``out_dir``:
    config.json, metrics.csv, curves.png and checkpoint.npz after every epoch (with
    ``track_gradients`` also gradients.csv and gradients.png: backprop.gradflow).

    ``resume`` continues a validated checkpoint's exact trajectory (any engine's), and its gradient
    tracking: ``track_gradients`` None keeps the checkpoint's choice (off for a new run), True
    tracks (from the resumed step on, when the run did not before). ``blas_threads``: the GEMM
    thread count the caller applied (backprop.threads), recorded in config.json and every
    checkpoint so that a resumed session can reuse it. ``data_dir``
    (where ``dataset`` was read from) is recorded in config.json and the checkpoint, so that a
    resumed run and an evaluation find the data again. Progress bars go to stderr when it is a
    terminal (never with ``quiet``). Raises ValueError when the checkpoint cannot continue on this
    data (another number of training samples), and the engine's errors when its state does not load.
    """

    def __init__(self, config: TrainConfig, engine: Engine, dataset: Dataset, out_dir: str,
                 quiet: bool = False, resume: Checkpoint | None = None,
                 log: Callable[[str], object] = print, data_dir: str | None = None,
                 track_gradients: bool | None = None, blas_threads: int | None = None) -> None:
        self.config = config
        self.blas_threads = blas_threads
        self.engine = engine
        self.out_dir = out_dir
        self.quiet = quiet
        self.log = log
        self.data_dir = data_dir
        self.dataset_name = dataset.name
        train_x, train_y = dataset.train_x, dataset.train_y
        if config.limit is not None:
            train_x, train_y = train_x[: config.limit], train_y[: config.limit]
        for part, values in (("training", train_x), ("test", dataset.test_x)):
            _check_finite_samples(part, values)
        check_trainable(config.network)  # a checkpoint's network too: it loads, but cannot train
        _check_last_batch(config.network, len(train_y), config.batch_size)
        # A convolutional stack sees (N, 1, 28, 28) images: views of the (N, 784) rows.
        self.test_x, self.test_y = image_view(dataset.test_x, config.network), dataset.test_y
        self.train_x, self.train_y = image_view(train_x, config.network), train_y
        self.eval_chunk = evaluation_chunk(config.network, self.test_x.dtype.itemsize)
        self.net = build_network(engine, config, training=True)
        self.optimizer = engine.build_optimizer(
            self.net, config.optimizer, config.lr, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=config.weight_decay, betas=config.betas, eps=config.eps,
        )
        self.loss_fn = engine.loss()
        if config.clip_grad_norm is not None:
            gradient_clipper(engine)  # an engine without clipping is refused now, not at the first step
        self.feeder = engine.feeder(self.train_x, train_y, config.batch_size, config.seed)
        self.rates = epoch_learning_rates(config.lr_schedule, config.lr, config.epochs,
                                          config.step_size, config.gamma, t_max=config.t_max)
        self.progress = Progress()
        # Batch norm's num_batches_tracked lives in the layers (momentum=None averages by it). An
        # engine whose batch norm keeps no counter is counted here: the count at the start of this
        # session (a checkpoint's, or 0) plus one per training step since (one train-mode forward each).
        self._tracked = {path: 0 for path in paths_of(config.network, "batchnorm1d", "batchnorm2d")
                         if not hasattr(layer_at(self.net, path), "num_batches_tracked")}
        self._tracked_from_step = 0
        if resume is not None:
            self._restore(resume)
        # --track-gradients (backprop.gradflow): None when off, so a step pays nothing for it.
        tracked_before = resume is not None and resume.gradients is not None
        if track_gradients is None:
            track_gradients = tracked_before
        self.gradients = GradientTracker(self.net, engine.to_numpy) if track_gradients else None
        if self.gradients is not None:
            self.gradients.load(os.path.join(out_dir, GRADIENTS_CSV), self.progress.epoch)
            if resume is not None and resume.gradients is not None:
                self.gradients.set_state(resume.gradients)  # the epoch in progress's sums so far
        self._stop_requested = False

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> str:
        """``<out_dir>/checkpoint.npz``."""
        return os.path.join(self.out_dir, CHECKPOINT_NAME)

    def _restore(self, checkpoint: Checkpoint) -> None:
        samples = checkpoint.meta["rng"]["train_samples"]
        # A run that has not trained yet (an import) has no batch order to keep: any data starts it.
        if samples != len(self.train_y) and checkpoint.progress.global_step > 0:
            raise ValueError(f"it was trained on {samples} sample{'s' if samples != 1 else ''}, and this data has "
                             f"{len(self.train_y)} "
                             "(another --data-dir or dataset?): the batch order would differ")
        self.net.load_state_dict(checkpoint.params)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        for path, state in checkpoint.dropout_rng.items():
            layer_at(self.net, path).set_rng_state(state)
        for path, count in checkpoint.num_batches_tracked.items():  # none in an old MLP's checkpoint
            if path in self._tracked:
                self._tracked[path] = count
            else:
                layer_at(self.net, path).num_batches_tracked = count
        self._tracked_from_step = checkpoint.progress.global_step
        # Rows from files that predate the engine column: the engine that wrote the file is the best record.
        history = [{"engine": checkpoint.engine, **row} for row in checkpoint.progress.history]
        self.progress = dataclasses.replace(checkpoint.progress, history=history)

    def save(self) -> None:
        """Write checkpoint.npz (atomically) from the current parameters, optimizer and progress."""
        meta = checkpoint_meta(self.config, self.engine.name, self.progress, len(self.train_y), self.data_dir,
                               dropout_rng=self.dropout_states(), num_batches_tracked=self.num_batches_tracked(),
                               blas_threads=self.blas_threads,
                               gradients=None if self.gradients is None else self.gradients.state())
        save_checkpoint(self.checkpoint_path, self.net.state_dict(), self.optimizer.state_dict(), meta)

    def idle_epochs(self) -> list[int]:
        """The epochs (1-based) still to train whose learning rate is 0: a cosine schedule's
        epochs T_max + 1, 3 T_max + 1, ... (T_max fixed when the run was created), reached when
        a finished run is continued with more epochs."""
        return [epoch + 1 for epoch in range(self.progress.epoch, self.config.epochs) if self.rates[epoch] == 0]

    def dropout_states(self) -> dict[str, dict[str, Any]]:
        """Every Dropout layer's mask generator state, by layer path (exact resumption)."""
        return {path: layer_at(self.net, path).rng_state() for path in paths_of(self.config.network, "dropout")}

    def num_batches_tracked(self) -> dict[str, int]:
        """torch's num_batches_tracked of every batch norm layer, by layer path: the layer's own
        counter (or this trainer's count, for an engine whose layer keeps none)."""
        done = self.progress.global_step - self._tracked_from_step
        return {path: self._tracked[path] + done if path in self._tracked
                else int(layer_at(self.net, path).num_batches_tracked)
                for path in paths_of(self.config.network, "batchnorm1d", "batchnorm2d")}

    # -- the loop ---------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: object) -> None:
        if self._stop_requested:  # a second Ctrl-C: stop now, the checkpoint on disk stays intact
            raise KeyboardInterrupt
        self._stop_requested = True

    def run(self) -> list[dict[str, Any]]:
        """Train until config.epochs; returns the metrics rows (one per finished epoch).

        Raises TrainingDiverged on a non-finite loss (the last checkpoint is left as it was) and
        TrainingInterrupted after a Ctrl-C (a checkpoint of the last completed step was written).
        """
        os.makedirs(self.out_dir, exist_ok=True)
        data_dir = {} if self.data_dir is None else {"data_dir": os.path.abspath(self.data_dir)}
        atomic_write_text(os.path.join(self.out_dir, "config.json"), json.dumps(
            {**self.config.to_json(), "engine": self.engine.name, "device": self.engine.device, **data_dir,
             **({} if self.blas_threads is None else {"blas_threads": self.blas_threads})},
            indent=2) + "\n")
        previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: Ctrl-C handling stays the caller's
            previous = None
        try:
            with training_numerics():
                while self.progress.epoch < self.config.epochs:
                    self._train_epoch()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        return self.progress.history

    def _train_epoch(self) -> None:
        from tqdm import tqdm

        cfg, p, engine = self.config, self.progress, self.engine
        net, opt, loss_fn, feeder = self.net, self.optimizer, self.loss_fn, self.feeder
        opt.lr = self.rates[p.epoch]
        feeder.start_epoch(p.epoch)
        steps = feeder.steps_per_epoch
        train_step = make_step(engine, net, opt, loss_fn, cfg.clip_grad_norm)
        if self.gradients is not None:
            train_step = self.gradients.wrap(train_step)
        set_mode(net, True)  # evaluation leaves eval mode behind on nets without a training flag
        # disable=None: tqdm shows the bar only when stderr is a terminal (not in a pipe or a log file).
        bar = tqdm(total=steps, initial=p.step, desc=f"epoch {p.epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=True if self.quiet else None, leave=False, dynamic_ncols=True)
        show = not bar.disable
        next_refresh = 0.0
        engine.synchronize()
        started = time.perf_counter()
        try:
            while p.step < steps:
                xb, yb = feeder.batch(p.step)
                try:
                    loss, hits = train_step(xb, yb)
                except FloatingPointError as error:
                    raise TrainingDiverged(self._divergence_message(error), self.optimizer.lr) from None
                n = len(yb)
                p.loss_sum += loss * n
                p.correct += hits
                p.seen += n
                p.step += 1
                p.global_step += 1
                p.last_loss = loss
                if show:
                    bar.update(1)
                    now = time.perf_counter()
                    if now >= next_refresh:
                        elapsed = p.seconds + now - started
                        bar.set_postfix(loss=f"{p.loss_sum / p.seen:.4f}", acc=f"{p.correct / p.seen:.4f}",
                                        samples_per_s=f"{p.seen / max(elapsed, 1e-9):,.0f}", refresh=False)
                        next_refresh = now + 0.25
                if self._stop_requested:
                    break
        finally:
            engine.synchronize()
            p.seconds += time.perf_counter() - started
            bar.close()
        if self._stop_requested:
            self.save()
            raise TrainingInterrupted(
                f"interrupted at epoch {p.epoch + 1}, batch {p.step}/{steps} (step {p.global_step}); "
                f"saved {self.checkpoint_path}"
            )
        self._finish_epoch()

    def _divergence_message(self, error: Exception) -> str:
        p = self.progress
        last = f"{p.last_loss:.6g}" if p.last_loss is not None else "none yet"
        return (
            f"training diverged at step {p.global_step + 1} (epoch {p.epoch + 1}, batch {p.step + 1}): "
            f"{error}. Last finite loss: {last}; learning rate {self.optimizer.lr:g}: try a smaller one. "
            f"{self._checkpoint_note()}"
        )

    def _checkpoint_note(self) -> str:
        if os.path.exists(self.checkpoint_path):
            return f"The last good checkpoint ({self.checkpoint_path}) was left as it was."
        return "No checkpoint had been written yet."

    def _finish_epoch(self) -> None:
        p = self.progress
        eval_started = time.perf_counter()
        try:
            test_loss, test_acc, _ = evaluate(self.engine, self.net, self.test_x, self.test_y, self.eval_chunk)
        except FloatingPointError as error:  # the epoch's last step blew the parameters up
            last = f"{p.last_loss:.6g}" if p.last_loss is not None else "none"
            raise TrainingDiverged(
                f"training diverged in epoch {p.epoch + 1}: evaluating its parameters gave {error}. Last "
                f"finite training loss: {last}; learning rate {self.optimizer.lr:g}: try a smaller one. "
                f"{self._checkpoint_note()}", self.optimizer.lr
            ) from None
        row: dict[str, Any] = {
            "epoch": p.epoch + 1,
            "lr": self.rates[p.epoch],
            "train_loss": p.loss_sum / p.seen,
            "train_acc": p.correct / p.seen,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "seconds": p.seconds,
            "samples_per_s": p.seen / p.seconds if p.seconds else math.nan,
            "engine": self.engine.name,
        }
        eval_seconds = time.perf_counter() - eval_started
        p.history.append(row)
        p.epoch += 1
        p.step = p.correct = p.seen = 0
        p.loss_sum = p.seconds = 0.0
        # Files first, then the line: a reader that went away (`| head`) cannot cost the epoch.
        title = curves_title(self.config, [str(r["engine"]) for r in p.history], self.dataset_name)
        if self.gradients is not None:
            # Closed (sums back to 0) and written before the checkpoint: a checkpoint never holds a
            # finished epoch's sums, and a gradients.csv row ahead of it is dropped on resume (load).
            self.gradients.end_epoch(p.epoch)  # p.epoch: the epoch just finished, 1-based
            self.gradients.write(self.out_dir, title=title)
        self.save()
        atomic_write_text(os.path.join(self.out_dir, "metrics.csv"), metrics_csv(p.history))
        plot_curves(p.history, os.path.join(self.out_dir, "curves.png"), title=title)
        self.log(
            f"epoch {row['epoch']:>2}/{self.config.epochs}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f}  |  test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}"
            f"  |  {row['seconds']:.2f} s ({row['samples_per_s']:,.0f} samples/s) + eval {eval_seconds:.2f} s"
        )
