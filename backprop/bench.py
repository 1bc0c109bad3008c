"""`backprop bench`: training throughput of every engine, side by side, against the GEMM floor.

For each workload and batch size, the engines (and the floors) are timed in turn inside each
repeat, so drift in the machine's speed hits them all alike; medians over repeats are reported.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from .config import PRESETS

WORKLOADS = {
    "notebook": {k: PRESETS["notebook"][k] for k in ("hidden", "activation", "init", "lr")},
    "default": {k: PRESETS["default"][k] for k in ("hidden", "activation", "init", "lr")},
}
EPOCH_SAMPLES = 60_000


def comma_list(kind):
    def parse(text: str):
        return [kind(part) for part in text.split(",") if part]

    return parse


def add_parser(sub) -> None:
    from .cli import positive_int

    p = sub.add_parser("bench", help="throughput of each engine vs the matmul floor")
    p.add_argument("--engines", type=comma_list(str), default=["numpy", "torch", "autograd"])
    p.add_argument("--workloads", type=comma_list(str), default=list(WORKLOADS))
    p.add_argument("--batch-sizes", type=comma_list(positive_int), default=[32, 128, 1024])
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="timed steps per repeat (default: 1/4 epoch of 60,000 samples)")
    p.add_argument("--epochs", type=float, default=None, help="timed epochs per repeat instead of --steps")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--warmup", type=positive_int, default=20, help="untimed steps first")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default=None)
    p.add_argument("--data-dir", default=None, help="real data; without it synthetic inputs of MNIST shape")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", default=None, help="where bench.json and bench.png go (default runs/bench-<time>)")


def machine_info() -> dict:
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "numpy": np.__version__,
            "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP", "MKL"))}}
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy: no dict mode
        pass
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [{k: t.get(k) for k in ("internal_api", "num_threads", "architecture")}
                               for t in threadpool_info()]
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
        info["torch_blas"] = "MKL" if torch.backends.mkl.is_available() else "other"
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def _synthetic(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    from data.mnist import normalise

    rng = np.random.default_rng(0)
    x = normalise(rng.integers(0, 256, (EPOCH_SAMPLES, 28, 28), dtype=np.uint8))
    return x.astype(dtype, copy=False), rng.integers(0, 10, EPOCH_SAMPLES)


def training_arrays(dataset: str | None, data_dir: str | None, dtype: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, description): the real training split when a data dir is given, else synthetic."""
    if data_dir:
        from data import load_dataset

        split = load_dataset(dataset or "mnist", data_dir, dtype=dtype)
        return split.train_x, split.train_y, f"{split.name} from {data_dir}"
    x, y = _synthetic(dtype)
    return x, y, "synthetic inputs of MNIST shape (60000 x 784)"


def _time(fn, steps: int, sync) -> float:
    """Seconds per call, over ``steps`` calls."""
    sync()
    start = time.perf_counter()
    for i in range(steps):
        fn(i)
    sync()
    return (time.perf_counter() - start) / steps


def bench_case(engines, workload: str, batch: int, args, x, y, log=print) -> list[dict]:
    from data import BatchFeeder

    from .trainer import make_step

    spec = WORKLOADS[workload]
    sizes = [784, *spec["hidden"], 10]
    steps_per_epoch = -(-len(y) // batch)
    steps = args.steps or (max(1, int(args.epochs * steps_per_epoch)) if args.epochs else
                           max(10, steps_per_epoch // 4))
    full = (len(y) // batch) or 1  # time only full batches
    runners = {}
    for engine in engines:
        net = engine.build_net(sizes, spec["activation"], spec["init"], 0, args.dtype)
        opt = engine.build_optimizer(net, args.optimizer, spec["lr"] if args.optimizer == "sgd" else 1e-3)
        feeder = BatchFeeder(x, y, batch, seed=0, convert=engine.convert, convert_labels=engine.convert,
                             to_device=engine.to_device())
        feeder.start_epoch(0)
        step = make_step(engine, net, opt, engine.loss())

        def train(i, feeder=feeder, step=step):
            step(*feeder.batch(i % full))

        def feed(i, feeder=feeder):
            feeder.batch(i % full)

        runners[engine.name] = (train, feed, engine.synchronize)
    floors = {}
    from .floor import make_floor, step_flops

    libraries = {"numpy" if e.name == "numpy" else "torch" for e in engines}
    for library in sorted(libraries):
        run = make_floor(library, sizes, batch, args.dtype, args.device if library == "torch" else "cpu")
        sync = next(e.synchronize for e in engines if (e.name == "numpy") == (library == "numpy"))
        floors[library] = (lambda i, run=run: run(), sync)

    for train, _feed, sync in runners.values():
        _time(train, args.warmup, sync)
    for run, sync in floors.values():
        _time(run, args.warmup, sync)

    times: dict[str, list[float]] = {k: [] for k in [*runners, *(f"floor:{lib}" for lib in floors),
                                                     *(f"feed:{n}" for n in runners)]}
    names = list(runners)
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            train, feed, sync = runners[name]
            times[name].append(_time(train, steps, sync))
            times[f"feed:{name}"].append(_time(feed, steps, sync))
        for library, (run, sync) in floors.items():
            times[f"floor:{library}"].append(_time(run, steps, sync))

    rows = []
    for name in names:
        library = "numpy" if name == "numpy" else "torch"
        per_step = statistics.median(times[name])
        floor_step = statistics.median(times[f"floor:{library}"])
        feed_step = statistics.median(times[f"feed:{name}"])
        rows.append({
            "engine": name, "workload": workload, "batch_size": batch, "dtype": args.dtype,
            "s_per_epoch": per_step * steps_per_epoch,
            "samples_per_s": batch / per_step,
            "floor_s_per_epoch": floor_step * steps_per_epoch,
            "ratio_to_floor": per_step / floor_step,
            "floor_library": library,
            "feed_fraction": feed_step / per_step,
            "gflops": step_flops(sizes, batch) / per_step / 1e9,
            "steps_timed": steps, "repeats": args.repeats,
        })
    return rows


def format_table(rows: list[dict]) -> str:
    header = (f"{'workload':<9} {'batch':>5} {'engine':<9} {'s/epoch':>8} {'samples/s':>11} "
              f"{'floor s/ep':>10} {'x floor':>7} {'feed %':>6} {'GFLOP/s':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['workload']:<9} {r['batch_size']:>5} {r['engine']:<9} {r['s_per_epoch']:>8.3f} "
            f"{r['samples_per_s']:>11,.0f} {r['floor_s_per_epoch']:>10.3f} {r['ratio_to_floor']:>7.2f} "
            f"{100 * r['feed_fraction']:>6.1f} {r['gflops']:>8.1f}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    from .plots import _pyplot, finish

    plt = _pyplot()
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(1, len(workloads), figsize=(6 * len(workloads), 4.5), squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        subset = [r for r in rows if r["workload"] == workload]
        for engine in dict.fromkeys(r["engine"] for r in subset):
            pts = [r for r in subset if r["engine"] == engine]
            ax.plot([r["batch_size"] for r in pts], [r["samples_per_s"] for r in pts], marker="o", label=engine)
        for library in dict.fromkeys(r["floor_library"] for r in subset):
            pts = {r["batch_size"]: r for r in subset if r["floor_library"] == library}
            xs = sorted(pts)
            ax.plot(xs, [60_000 / pts[b]["floor_s_per_epoch"] for b in xs], linestyle="--",
                    label=f"GEMM floor ({library})")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="samples / s",
               title=f"{workload} network, {subset[0]['dtype']}")
    finish(fig, axes[0], path)


def run(args, parser) -> int:
    from .cli import _writable_dir_problem, check_device, fail
    from .engines import ENGINES, denormals_flushed, load_engine

    for name in args.engines:
        if name not in ENGINES:
            parser.error(f"--engines: unknown engine {name!r} (choose from {', '.join(ENGINES)})")
    for name in args.workloads:
        if name not in WORKLOADS:
            parser.error(f"--workloads: unknown workload {name!r} (choose from {', '.join(WORKLOADS)})")
    if args.device == "cuda":
        args.engine = "torch" if "numpy" not in args.engines else "numpy"
        check_device(args, parser)
    out = args.out or os.path.join("runs", f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    problem = _writable_dir_problem(out)
    if problem:
        parser.error(f"--out: {problem}")
    from data import DataError

    try:
        x, y, source = training_arrays(args.dataset, args.data_dir, args.dtype)
    except DataError as error:
        return fail(str(error))
    engines = [load_engine(name, args.device) for name in args.engines]
    info = machine_info()
    print(f"bench: {', '.join(args.engines)} on {source}; {args.dtype}, {args.optimizer}; "
          f"{info.get('cpu_count')} cores, numpy {info['numpy']} ({info.get('numpy_blas', '?')}), "
          f"torch {info.get('torch', '-')} ({info.get('torch_threads', '-')} threads)", flush=True)
    rows = []
    for workload in args.workloads:
        for batch in args.batch_sizes:
            with denormals_flushed():  # as `backprop train` runs
                case = bench_case(engines, workload, batch, args, x, y)
            rows.extend(case)
            print(format_table(case).split("\n", 2)[-1] if rows != case else format_table(case), flush=True)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump({"machine": info, "source": source, "command": " ".join(sys.argv), "rows": rows}, f, indent=2)
    plot(rows, os.path.join(out, "bench.png"))
    print(f"\n{format_table(rows)}\n\nwrote {os.path.join(out, 'bench.json')} and {os.path.join(out, 'bench.png')}")
    return 0
