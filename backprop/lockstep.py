"""Engines trained in lockstep from the same start on the same batches, and how far apart their
losses and parameters drift (`backprop compare`'s measurement)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine_core.specs import LayerSpec

from .architecture import image_view
from .engines import Engine, training_numerics
from .training import make_step


@dataclass(frozen=True)
class LockstepSettings:
    """The network and optimizer every engine trains: the network (a tree, engine_core.specs) and
    its init name, dtype, batch size, seed (weights and batch order), optimizer (sgd/adam/adamw),
    lr and SGD momentum, how many steps in total, and the max_norm every engine's
    clip_grad_norm_ clips the gradients to before each step (None: no clipping)."""

    network: LayerSpec
    init: str
    dtype: str
    batch_size: int
    seed: int
    optimizer: str
    lr: float
    momentum: float
    steps: int
    clip_grad_norm: float | None = None


def divergence(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Per parameter: (max |a - b|, max |a - b| / max |a|), a the reference.

    The relative figure is normwise (divided by the parameter's largest magnitude, not
    element by element), so an entry that happens to be ~0 cannot blow it up; a reference that
    is all zeros gives 0 when equal and inf otherwise.
    """
    out = {}
    for name, a in reference.items():
        a64 = np.asarray(a, np.float64)
        b64 = np.asarray(other[name], np.float64)
        diff = float(np.max(np.abs(a64 - b64))) if a64.size else 0.0
        scale = float(np.max(np.abs(a64))) if a64.size else 0.0
        out[name] = (diff, diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf))
    return out


def first_exceeding(rows: Iterable[dict[str, Any]], tol: float) -> dict[str, Any] | None:
    """The first row whose relative parameter difference exceeds tol (None if none does)."""
    for row in rows:
        if row["max_rel_diff"] > tol:
            return row
    return None


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in an epoch of n samples, the last one short."""
    return -(-n // batch_size)


def run_lockstep(engines: list[Engine], x: np.ndarray, y: np.ndarray, settings: LockstepSettings,
                 progress: Callable[[Iterable[int]], Iterable[int]] = iter) -> list[dict[str, Any]]:
    """Train every engine one step at a time on the same batches and compare each with the first.

    x: (N, 784) in settings.dtype (fed as (N, 1, 28, 28) images to a stack that starts with a
    2-D layer), y: (N,) labels. Returns one row per step and non-reference
    engine: step (1-based), engine, reference, loss, loss_diff, max_abs_diff, max_rel_diff,
    worst_param, and abs:/rel: per parameter. ``progress`` wraps the step range (e.g. tqdm).
    The engines' NonFiniteError propagates.
    """
    s = settings
    runs = []
    x = image_view(x, s.network)
    for engine in engines:
        net = engine.build_net(s.network, s.init, s.seed, s.dtype, training=True)
        opt = engine.build_optimizer(net, s.optimizer, s.lr, momentum=s.momentum)
        feeder = engine.feeder(x, y, s.batch_size, s.seed)
        runs.append((net, feeder, make_step(engine, net, opt, engine.loss(), s.clip_grad_norm)))
    per_epoch = steps_per_epoch(len(y), s.batch_size)
    names = list(runs[0][0].state_dict())
    rows: list[dict[str, Any]] = []
    with training_numerics():  # as `backprop train` runs
        for step in progress(range(s.steps)):
            epoch, index = divmod(step, per_epoch)
            losses, states = [], []
            for net, feeder, train_step in runs:
                feeder.start_epoch(epoch)
                loss, _ = train_step(*feeder.batch(index))
                losses.append(loss)
                states.append(net.state_dict())
            for k in range(1, len(runs)):
                per_param = divergence(states[0], states[k])
                worst = max(per_param, key=lambda n: per_param[n][1])
                row = {"step": step + 1, "engine": engines[k].spec, "reference": engines[0].spec,
                       "loss": losses[k], "loss_diff": abs(losses[k] - losses[0]),
                       "max_abs_diff": max(v[0] for v in per_param.values()),
                       "max_rel_diff": per_param[worst][1], "worst_param": worst}
                for name in names:
                    row[f"abs:{name}"], row[f"rel:{name}"] = per_param[name]
                rows.append(row)
    return rows


def rows_csv(rows: list[dict[str, Any]]) -> str:
    """compare.csv's text: a header of the rows' keys, one line per row."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def summary(rows: list[dict[str, Any]], engine: str, reference: str, tol: float) -> tuple[list[str], bool]:
    """The lines compare prints for one engine against the reference, and whether tol was exceeded."""
    mine = [r for r in rows if r["engine"] == engine]
    worst = max(mine, key=lambda r: r["max_rel_diff"])
    first = first_exceeding(mine, tol)
    lines = [f"{engine} vs {reference}: worst relative parameter difference {worst['max_rel_diff']:.3e} "
             f"({worst['worst_param']}, step {worst['step']}); worst loss difference "
             f"{max(r['loss_diff'] for r in mine):.3e}; final {mine[-1]['max_rel_diff']:.3e}"]
    if first:
        lines.append(f"  exceeds --tol {tol:g} first at step {first['step']} in {first['worst_param']} "
                     f"({first['max_rel_diff']:.3e})")
    else:
        lines.append(f"  within --tol {tol:g} for all {len(mine)} steps")
    return lines, first is not None
