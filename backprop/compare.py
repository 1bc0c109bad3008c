"""`backprop compare`: train engines in lockstep from the same start on the same batches and
measure, after every step, how far apart their losses and parameters are."""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time

import numpy as np

EXIT_OVER_TOLERANCE = 1


def divergence(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Per parameter: (max |a - b|, max |a - b| / max |a|), a the reference.

    The relative figure is normwise (divided by the parameter's largest magnitude, not
    element by element), so an entry that happens to be ~0 cannot blow it up.
    """
    out = {}
    for name, a in reference.items():
        a64 = np.asarray(a, np.float64)
        b64 = np.asarray(other[name], np.float64)
        diff = float(np.max(np.abs(a64 - b64))) if a64.size else 0.0
        scale = float(np.max(np.abs(a64))) if a64.size else 0.0
        out[name] = (diff, diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf))
    return out


def first_exceeding(rows: list[dict], tol: float) -> dict | None:
    """The first row whose relative parameter difference exceeds tol (None if none does)."""
    for row in rows:
        if row["max_rel_diff"] > tol:
            return row
    return None


def add_parser(sub) -> None:
    from .bench import comma_list
    from .cli import ACTIVATION_NAMES, INIT_NAMES, non_negative_float, positive_int, width_list

    p = sub.add_parser("compare", help="train engines in lockstep and measure how far apart they drift")
    p.add_argument("--engines", type=comma_list(str), default=["numpy", "torch"],
                   help="two or three of numpy,torch,autograd; the first is the reference")
    p.add_argument("--steps", type=positive_int, default=None, help="default: one epoch")
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--tol", type=non_negative_float, default=1e-6,
                   help="largest allowed relative parameter difference (exit 1 beyond it)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--preset", choices=("notebook", "default"), default="notebook")
    p.add_argument("--hidden", type=width_list)
    p.add_argument("--activation", choices=ACTIVATION_NAMES)
    p.add_argument("--init", choices=INIT_NAMES)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    p.add_argument("--lr", type=non_negative_float)
    p.add_argument("--momentum", type=non_negative_float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=positive_int)
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default=None)
    p.add_argument("--data-dir", default=None, help="real data; without it synthetic inputs of MNIST shape")
    p.add_argument("--out", default=None, help="where compare.csv and compare.png go")
    p.add_argument("--quiet", action="store_true")


def plot(rows: list[dict], path: str, tol: float) -> None:
    from .plots import _pyplot, finish

    plt = _pyplot()
    fig, (ax_p, ax_l) = plt.subplots(1, 2, figsize=(11, 4))
    for engine in dict.fromkeys(r["engine"] for r in rows):
        pts = [r for r in rows if r["engine"] == engine]
        steps = [r["step"] for r in pts]
        label = f"{engine} vs {pts[0]['reference']}"
        # Exact agreement (0) has no place on a log axis: those steps are left blank.
        params = [r["max_rel_diff"] or math.nan for r in pts]
        losses = [r["loss_diff"] or math.nan for r in pts]
        ax_p.plot(steps, params, label=label)
        ax_l.plot(steps, losses, ".", markersize=2, label=label)
    ax_p.axhline(tol, color="red", linestyle="--", label=f"--tol {tol:g}")
    ax_p.set(yscale="log", xlabel="step", ylabel="max relative parameter difference", title="parameters")
    ax_l.set(yscale="log", xlabel="step", ylabel="|loss difference|", title="loss (steps with equal losses blank)")
    finish(fig, (ax_p, ax_l), path)


def run(args, parser) -> int:
    from data import BatchFeeder

    from .bench import training_arrays
    from .checkpoint import atomic_write
    from .cli import _writable_dir_problem, fail
    from .config import PRESETS
    from .engines import ENGINES, denormals_flushed, load_engine
    from .trainer import make_step

    if not 2 <= len(args.engines) <= 3 or len(set(args.engines)) != len(args.engines):
        parser.error("--engines: give two or three different engines, e.g. numpy,torch")
    for name in args.engines:
        if name not in ENGINES:
            parser.error(f"--engines: unknown engine {name!r} (choose from {', '.join(ENGINES)})")
    out = args.out or os.path.join("runs", f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    problem = _writable_dir_problem(out)
    if problem:
        parser.error(f"--out: {problem}")
    preset = PRESETS[args.preset]
    hidden = args.hidden if args.hidden is not None else preset["hidden"]
    activation = args.activation or preset["activation"]
    init = args.init or preset["init"]
    batch = args.batch_size or preset["batch_size"]
    optimizer = args.optimizer or preset["optimizer"]
    lr = args.lr if args.lr is not None else (preset["lr"] if optimizer == "sgd" else 1e-3)
    momentum = args.momentum if args.momentum is not None else (preset["momentum"] if optimizer == "sgd" else 0)
    from data import DataError

    try:
        x, y, _ = training_arrays(args.dataset, args.data_dir, args.dtype)
    except DataError as error:
        return fail(str(error))
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    sizes = [784, *hidden, 10]
    engines = [load_engine(name) for name in args.engines]
    runs = []
    for engine in engines:
        net = engine.build_net(sizes, activation, init, args.seed, args.dtype)
        opt = engine.build_optimizer(net, optimizer, lr, momentum=momentum)
        feeder = BatchFeeder(x, y, batch, args.seed, convert=engine.convert, convert_labels=engine.convert)
        runs.append((engine, net, feeder, make_step(engine, net, opt, engine.loss())))
    steps_per_epoch = runs[0][2].steps_per_epoch
    total = args.steps or (args.epochs or 1) * steps_per_epoch
    print(f"compare: {' vs '.join(args.engines)}, {sizes} {activation}, {args.dtype}, batch {batch}, "
          f"{optimizer} lr {lr:g}, {total} steps, tol {args.tol:g}", flush=True)

    from tqdm import tqdm

    names = list(runs[0][1].state_dict())
    rows: list[dict] = []
    with denormals_flushed():  # as `backprop train` runs
        for step in tqdm(range(total), disable=args.quiet, leave=False, unit="step"):
            epoch, index = divmod(step, steps_per_epoch)
            losses, states = [], []
            for _engine, net, feeder, train_step in runs:
                feeder.start_epoch(epoch)
                loss, _ = train_step(*feeder.batch(index))
                losses.append(loss)
                states.append(net.state_dict())
            for k in range(1, len(runs)):
                per_param = divergence(states[0], states[k])
                worst = max(per_param, key=lambda n: per_param[n][1])
                row = {"step": step + 1, "engine": args.engines[k], "reference": args.engines[0],
                       "loss": losses[k], "loss_diff": abs(losses[k] - losses[0]),
                       "max_abs_diff": max(v[0] for v in per_param.values()),
                       "max_rel_diff": per_param[worst][1], "worst_param": worst}
                for name in names:
                    row[f"abs:{name}"], row[f"rel:{name}"] = per_param[name]
                rows.append(row)

    os.makedirs(out, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(os.path.join(out, "compare.csv"), lambda f: f.write(buffer.getvalue().encode()))
    plot(rows, os.path.join(out, "compare.png"), args.tol)

    exceeded = False
    for name in args.engines[1:]:
        mine = [r for r in rows if r["engine"] == name]
        worst = max(mine, key=lambda r: r["max_rel_diff"])
        first = first_exceeding(mine, args.tol)
        print(f"{name} vs {args.engines[0]}: worst relative parameter difference {worst['max_rel_diff']:.3e} "
              f"({worst['worst_param']}, step {worst['step']}); worst loss difference "
              f"{max(r['loss_diff'] for r in mine):.3e}; final {mine[-1]['max_rel_diff']:.3e}")
        if first:
            exceeded = True
            print(f"  exceeds --tol {args.tol:g} first at step {first['step']} in {first['worst_param']} "
                  f"({first['max_rel_diff']:.3e})")
        else:
            print(f"  within --tol {args.tol:g} for all {len(mine)} steps")
    print(f"wrote {os.path.join(out, 'compare.csv')} and {os.path.join(out, 'compare.png')}")
    if exceeded:
        print(f"backprop: tolerance {args.tol:g} exceeded", file=sys.stderr)
        return EXIT_OVER_TOLERANCE
    return 0
