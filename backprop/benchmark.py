"""Training throughput of engines, side by side, against the GEMM floor (`backprop bench`'s measurement).

For each workload and batch size, the engines (and the floors) are timed in turn inside each
repeat, so drift in the machine's speed hits them all alike; medians over repeats are reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # optional: reports BLAS thread pools when installed
    from threadpoolctl import threadpool_info
except ImportError:
    threadpool_info = None

from .config import CLASSES, IN_FEATURES, PRESETS, default_lr
from .engines import Engine
from .floor import make_floor, step_flops
from .training import make_step

WORKLOADS: dict[str, dict[str, Any]] = {
    name: {k: PRESETS[name][k] for k in ("hidden", "activation", "init", "lr")} for name in ("notebook", "default")
}
# An engine's step is compared with the GEMMs of the library its arrays belong to.
NUMPY_FLOOR, TORCH_FLOOR = "numpy", "torch"
# Below these, medians are of too little to mean much on a shared machine (noise_warning).
MIN_STEPS, MIN_REPEATS = 50, 3


@dataclass(frozen=True)
class BenchSettings:
    """How to time one case.

    dtype: "float32"/"float64"; optimizer: a key of engine_core.OPTIMIZERS (SGD runs at the
    workload's lr, Adam/AdamW at torch's default, 1e-3: config.default_lr); steps: timed steps
    per repeat (None: ``epochs`` of an epoch, or a quarter epoch when both are None); repeats:
    timed rounds (medians reported);
    warmup: untimed steps first; device: where the torch floor runs.
    """

    dtype: str = "float32"
    optimizer: str = "sgd"
    steps: int | None = None
    epochs: float | None = None
    repeats: int = 5
    warmup: int = 20
    device: str = "cpu"


def machine_info() -> dict[str, Any]:
    """Cores, versions, BLAS and thread settings of this machine, for bench.json."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP", "MKL"))},
    }
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy has no dict mode; the BLAS name is then just left out
        pass
    if threadpool_info is not None:
        info["threadpools"] = [{k: t.get(k) for k in ("internal_api", "num_threads", "architecture")}
                               for t in threadpool_info()]
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


def floor_library(engine: Engine) -> str:
    """Which library's GEMMs are this engine's floor: NumPy for engines whose arrays are NumPy
    arrays, torch otherwise (judged by the array the engine makes, not by its name)."""
    return NUMPY_FLOOR if isinstance(engine.asarray(np.zeros((1, 1)), "float32"), np.ndarray) else TORCH_FLOOR


def _ignore_index(fn: Callable[[], None]) -> Callable[[int], None]:
    def call(i: int) -> None:
        fn()

    return call


def _time(fn: Callable[[int], object], steps: int, sync: Callable[[], None]) -> float:
    """Seconds per call, over ``steps`` calls."""
    sync()
    start = time.perf_counter()
    for i in range(steps):
        fn(i)
    sync()
    return (time.perf_counter() - start) / steps


def bench_case(engines: list[Engine], workload: str, batch: int, settings: BenchSettings, x: np.ndarray,
               y: np.ndarray) -> list[dict[str, Any]]:
    """Time every engine's training step (feed included) and its floor on one workload and batch size.

    x: (N, 784) in settings.dtype, y: (N,) labels. Returns one row per engine: seconds per epoch
    (of N samples), samples/s, the floor's seconds per epoch, the ratio, the share of a step spent
    feeding, GFLOP/s. Raises KeyError for an unknown workload, ValueError for a batch larger than
    the data (it would be timed as a smaller one).
    """
    spec = WORKLOADS[workload]
    if batch > len(y):
        raise ValueError(f"batch size {batch} is larger than the {len(y)} samples")
    sizes = [IN_FEATURES, *spec["hidden"], CLASSES]
    steps_per_epoch = -(-len(y) // batch)
    if settings.steps:
        steps = settings.steps
    elif settings.epochs:
        steps = max(1, int(settings.epochs * steps_per_epoch))
    else:
        steps = max(10, steps_per_epoch // 4)
    full = (len(y) // batch) or 1  # time only full batches
    lr = default_lr(workload, settings.optimizer)
    runners = {}
    for engine in engines:
        net = engine.build_net(sizes, spec["activation"], spec["init"], 0, settings.dtype, training=True)
        opt = engine.build_optimizer(net, settings.optimizer, lr)
        feeder = engine.feeder(x, y, batch, seed=0)
        feeder.start_epoch(0)
        step = make_step(engine, net, opt, engine.loss())

        def train(i: int, feeder: Any = feeder, step: Any = step) -> None:
            step(*feeder.batch(i % full))

        def feed(i: int, feeder: Any = feeder) -> None:
            feeder.batch(i % full)

        runners[engine.spec] = (train, feed, engine.synchronize, floor_library(engine))
    floors: dict[str, tuple[Callable[[int], object], Callable[[], None]]] = {}
    for library in sorted({runner[3] for runner in runners.values()}):
        gemms = make_floor(library, sizes, batch, settings.dtype, settings.device if library == TORCH_FLOOR else "cpu")
        sync = next(runner[2] for runner in runners.values() if runner[3] == library)
        floors[library] = (_ignore_index(gemms), sync)

    for train, _feed, sync, _library in runners.values():
        _time(train, settings.warmup, sync)
    for floor, sync in floors.values():
        _time(floor, settings.warmup, sync)

    times: dict[str, list[float]] = {k: [] for k in [*runners, *(f"floor:{lib}" for lib in floors),
                                                     *(f"feed:{n}" for n in runners)]}
    names = list(runners)
    for r in range(settings.repeats):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            train, feed, sync, _library = runners[name]
            times[name].append(_time(train, steps, sync))
            times[f"feed:{name}"].append(_time(feed, steps, sync))
        for library, (floor, sync) in floors.items():
            times[f"floor:{library}"].append(_time(floor, steps, sync))

    rows = []
    for name in names:
        library = runners[name][3]
        per_step = statistics.median(times[name])
        floor_step = statistics.median(times[f"floor:{library}"])
        feed_step = statistics.median(times[f"feed:{name}"])
        rows.append({
            "engine": name, "workload": workload, "batch_size": batch, "dtype": settings.dtype,
            "s_per_epoch": per_step * steps_per_epoch,
            "samples_per_s": batch / per_step,
            "floor_s_per_epoch": floor_step * steps_per_epoch,
            "floor_samples_per_s": batch / floor_step,
            "ratio_to_floor": per_step / floor_step,
            "floor_library": library,
            "feed_fraction": feed_step / per_step,
            "gflops": step_flops(sizes, batch) / per_step / 1e9,
            "steps_timed": steps, "repeats": settings.repeats,
        })
    return rows


def format_table(rows: list[dict[str, Any]], header: bool = True) -> str:
    """bench's rows as a fixed-width table (with a header and rule unless ``header`` is False)."""
    head = (f"{'workload':<9} {'batch':>5} {'engine':<9} {'s/epoch':>8} {'samples/s':>11} "
            f"{'floor s/ep':>10} {'x floor':>7} {'feed %':>6} {'GFLOP/s':>8}")
    lines = [head, "-" * len(head)] if header else []
    for r in rows:
        lines.append(
            f"{r['workload']:<9} {r['batch_size']:>5} {r['engine']:<9} {r['s_per_epoch']:>8.3f} "
            f"{r['samples_per_s']:>11,.0f} {r['floor_s_per_epoch']:>10.3f} {r['ratio_to_floor']:>7.2f} "
            f"{100 * r['feed_fraction']:>6.1f} {r['gflops']:>8.1f}"
        )
    return "\n".join(lines)


def noise_warning(rows: list[dict[str, Any]]) -> str | None:
    """A warning when the rows were timed over too few steps or repeats to be more than noise
    (fewer than MIN_STEPS steps per repeat, or fewer than MIN_REPEATS repeats); None otherwise."""
    if not rows:
        return None
    steps = min(r["steps_timed"] for r in rows)
    repeats = min(r["repeats"] for r in rows)
    problems = []
    if steps < MIN_STEPS:
        problems.append(f"{steps} timed steps per repeat (use --steps {MIN_STEPS} or more; the default is a quarter "
                        "epoch)")
    if repeats < MIN_REPEATS:
        problems.append(f"{repeats} repeats (use --repeats {MIN_REPEATS} or more)")
    if not problems:
        return None
    return f"only {' and '.join(problems)}: timings this short are mostly noise, compare them with care"
