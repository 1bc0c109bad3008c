"""The engine-agnostic training loop: the same code drives numpy_net, torch_net and autograd."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from data import BatchFeeder, Dataset

from .checkpoint import Checkpoint, atomic_write, save_checkpoint
from .config import TrainConfig
from .engines import Engine, denormals_flushed
from .schedules import epoch_learning_rates

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "samples_per_s"]
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class TrainingDiverged(Exception):
    """The loss became NaN or Inf; the message says where and what to try."""


class TrainingInterrupted(Exception):
    """SIGINT: a checkpoint of the last completed step was written."""


@dataclass
class Progress:
    """Where a run stands; what a checkpoint needs beyond parameters and optimizer state."""

    epoch: int = 0  # the epoch in progress (0-based)
    step: int = 0  # batches of it already done
    global_step: int = 0
    loss_sum: float = 0.0  # sum over the epoch's samples so far
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # training time spent in this epoch so far
    last_loss: float | None = None
    history: list[dict] = field(default_factory=list)


def make_step(engine: Engine, net, optimizer, loss_fn):
    """One training step as a closure: (x, y) -> (mean loss, correct predictions).

    The trainer and `backprop bench` both run exactly this.
    """
    forward, loss_forward, loss_backward = net.forward, loss_fn.forward, loss_fn.backward
    backward, step, hits = net.backward, optimizer.step, engine.argmax_hits
    if engine.name == "autograd":  # autograd accumulates into .grad; our engines overwrite
        zero_grad = optimizer.zero_grad

        def train_step(x, y):
            logits = forward(x)
            loss = loss_forward(logits, y)
            zero_grad()
            backward(loss_backward(), input_grad=False)
            step()
            return loss, hits(logits, y)

        return train_step

    def train_step(x, y):
        logits = forward(x)
        loss = loss_forward(logits, y)
        backward(loss_backward(), input_grad=False)
        step()
        return loss, hits(logits, y)

    return train_step


def evaluate(engine: Engine, net, x: np.ndarray, y: np.ndarray, chunk: int = 10_000):
    """(mean loss, accuracy, predictions) over a whole split, forward only, in chunks."""
    loss_fn = engine.loss()
    total, predictions = 0.0, np.empty(len(y), np.int64)
    context = contextlib.nullcontext()
    if engine.uses_torch:
        import torch

        context = torch.no_grad()
    with context:
        for start in range(0, len(y), chunk):
            xs = np.ascontiguousarray(x[start : start + chunk])
            ys = y[start : start + chunk]
            xb = engine.convert(xs)
            yb = engine.convert(np.ascontiguousarray(ys))
            move = engine.to_device()
            if move is not None:
                xb, yb = move(xb), move(yb)
            logits = net.forward(xb)
            total += loss_fn.forward(logits, yb) * len(ys)
            predictions[start : start + len(ys)] = engine.to_numpy(logits.argmax(1))
    return total / len(y), float(np.mean(predictions == y)), predictions


def write_metrics(path: str, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in METRIC_COLUMNS})
    atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))


class Trainer:
    def __init__(self, config: TrainConfig, engine: Engine, dataset: Dataset, out_dir: str,
                 quiet: bool = False, resume: Checkpoint | None = None, log=print) -> None:
        self.config = config
        self.engine = engine
        self.out_dir = out_dir
        self.quiet = quiet
        self.log = log
        train_x, train_y = dataset.train_x, dataset.train_y
        if config.limit is not None:
            train_x, train_y = train_x[: config.limit], train_y[: config.limit]
        self.test_x, self.test_y = dataset.test_x, dataset.test_y
        self.train_x, self.train_y = train_x, train_y
        self.net = engine.build_net(config.sizes, config.activation, config.init, config.seed, config.dtype)
        self.optimizer = engine.build_optimizer(
            self.net, config.optimizer, config.lr, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=config.weight_decay, betas=config.betas, eps=config.eps,
        )
        self.loss_fn = engine.loss()
        self.feeder = BatchFeeder(train_x, train_y, config.batch_size, config.seed,
                                  convert=engine.convert, convert_labels=engine.convert,
                                  to_device=engine.to_device())
        self.rates = epoch_learning_rates(config.lr_schedule, config.lr, config.epochs,
                                          config.step_size, config.gamma)
        self.progress = Progress()
        if resume is not None:
            self._restore(resume)
        self._stop_requested = False

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.out_dir, "checkpoint.npz")

    def _restore(self, checkpoint: Checkpoint) -> None:
        self.net.load_state_dict(checkpoint.params)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.progress = Progress(**checkpoint.meta["progress"], history=list(checkpoint.meta.get("history", [])))

    def save(self) -> None:
        p = self.progress
        meta = {
            "engine": self.engine.name,
            "config": self.config.to_json(),
            "progress": {k: v for k, v in asdict(p).items() if k != "history"},
            # The batch order of epoch e is default_rng([seed, epoch]).permutation(n): this
            # (with progress.step) is the data RNG's whole state.
            "rng": {"kind": "numpy.default_rng([seed, epoch]).permutation", "seed": self.config.seed,
                    "epoch": p.epoch, "batches_done": p.step, "train_samples": len(self.train_y)},
            "history": p.history,
        }
        save_checkpoint(self.checkpoint_path, self.net.state_dict(), self.optimizer.state_dict(), meta)

    # -- the loop ---------------------------------------------------------------------------
    def _on_sigint(self, signum, frame) -> None:
        if self._stop_requested:  # a second Ctrl-C: stop now, the checkpoint on disk stays intact
            raise KeyboardInterrupt
        self._stop_requested = True

    def run(self) -> list[dict]:
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, "config.json"), "w") as f:
            json.dump({**self.config.to_json(), "engine": self.engine.name,
                       "device": self.engine.device}, f, indent=2)
        previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: Ctrl-C handling stays the caller's
            previous = None
        try:
            with denormals_flushed():
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
        train_step = make_step(engine, net, opt, loss_fn)
        bar = tqdm(total=steps, initial=p.step, desc=f"epoch {p.epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=self.quiet, leave=False, dynamic_ncols=True)
        next_refresh = 0.0
        engine.synchronize()
        started = time.perf_counter()
        try:
            while p.step < steps:
                xb, yb = feeder.batch(p.step)
                try:
                    loss, hits = train_step(xb, yb)
                except FloatingPointError as error:
                    raise TrainingDiverged(self._divergence_message(error)) from None
                n = len(yb)
                p.loss_sum += loss * n
                p.correct += hits
                p.seen += n
                p.step += 1
                p.global_step += 1
                p.last_loss = loss
                if not self.quiet:
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
            f"{error}. Last finite loss: {last}. Try a smaller --lr (now {self.optimizer.lr:g}). "
            f"The last good checkpoint ({self.checkpoint_path}) was left as it was."
        )

    def _finish_epoch(self) -> None:
        p = self.progress
        eval_started = time.perf_counter()
        try:
            test_loss, test_acc, _ = evaluate(self.engine, self.net, self.test_x, self.test_y)
        except FloatingPointError as error:  # the epoch's last step blew the parameters up
            raise TrainingDiverged(
                f"training diverged in epoch {p.epoch + 1}: evaluating its parameters gave {error}. Last "
                f"finite training loss: {p.last_loss:.6g}. Try a smaller --lr (now {self.optimizer.lr:g}). "
                f"The last good checkpoint ({self.checkpoint_path}) was left as it was."
            ) from None
        row = {
            "epoch": p.epoch + 1,
            "train_loss": p.loss_sum / p.seen,
            "train_acc": p.correct / p.seen,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "seconds": p.seconds,
            "samples_per_s": p.seen / p.seconds if p.seconds else math.nan,
        }
        eval_seconds = time.perf_counter() - eval_started
        p.history.append(row)
        self.log(
            f"epoch {row['epoch']:>2}/{self.config.epochs}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f}  |  test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}"
            f"  |  {row['seconds']:.2f} s ({row['samples_per_s']:,.0f} samples/s) + eval {eval_seconds:.2f} s"
        )
        p.epoch += 1
        p.step = p.loss_sum = p.correct = p.seen = 0
        p.seconds = 0.0
        self.save()
        write_metrics(os.path.join(self.out_dir, "metrics.csv"), p.history)
        from .plots import plot_curves

        plot_curves(p.history, os.path.join(self.out_dir, "curves.png"),
                    title=f"{self.config.dataset}, {self.engine.name} engine")
