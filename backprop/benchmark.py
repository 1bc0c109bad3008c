"""Training throughput of engines, side by side, against the GEMM floor (`backprop bench`'s measurement).

For each workload and batch size: the thread counts are set (backprop.threads: measured on
the floor's products when "auto"), each library's floor is chosen (backprop.floor: the fastest
formulation of every product), then the engines (and the floors) are timed in turn inside each
repeat, so drift in the machine's speed hits them all alike; medians over repeats are reported.
A separate instrumented pass afterwards times each phase of a step (feed, forward, loss,
backward, update, accuracy), with a device synchronisation between phases, and another each
layer's forward and backward (hand-written engines), so that the headline timing carries no
clock reads or synchronisations of its own.

Reproducibility: each repeat times an engine and its floor back to back, so their ratio in that
repeat is paired against the machine's speed at that moment; a row reports the median ratio and
its spread over the repeats ((max - min) / median), and is marked unstable when that spread, or
its floor's own, exceeds UNSTABLE. `backprop bench` runs each case (workload and batch size) in a
fresh process (run_isolated), so that no case inherits another's thread pools, allocator state or
compiled graphs. pyperf was considered for the timing and statistics: its Runner owns the command
line and times one benchmark per worker process, compared across runs, whereas a row here is a
ratio to a floor timed in the same repeat; multiprocessing gives the isolation and statistics
the medians and ranges.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:  # reports BLAS thread pools (a dependency; tolerated missing in a bare checkout)
    from threadpoolctl import threadpool_info
except ImportError:
    threadpool_info = None


from .architecture import image_view
from .engines import Engine
from .floor import Floor, make_floor
from .gemms import gemm_flops, gemm_library
from .threads import AUTO, apply_threads, choose_threads, cpu_count, rule_threads, thread_candidates, threads_of
from .workloads import WORKLOADS, workload_gemms, workload_lr, workload_network

# An engine's step is compared with the GEMMs of the library its arrays belong to.
NUMPY_FLOOR, TORCH_FLOOR = "numpy", "torch"
# Below these, medians are of too little to mean much on a shared machine (noise_warning):
# fewer steps per repeat AND a repeat shorter than MIN_REPEAT_S, or fewer repeats.
MIN_STEPS, MIN_REPEATS, MIN_REPEAT_S = 50, 3, 0.5
PHASES = ("feed", "forward", "loss", "backward", "update", "accuracy")
# The rows of torch.compile: autograd's nn.Module and optimizer (the reference a user would pick
# instead of an engine), and the torch engine's own hand-written step (torch_net.compiled).
COMPILED_AUTOGRAD, COMPILED_TORCH = "autograd+compile", "torch+compile"
# A row whose ratio to its floor, or whose floor, moved more than this fraction of its median
# over the repeats is marked unstable (see spread).
UNSTABLE = 0.10


@dataclass(frozen=True)
class BenchSettings:
    """How to time one case.

    dtype: "float32"/"float64"; optimizer: a key of engine_core.OPTIMIZERS (SGD runs at the
    workload's lr, Adam/AdamW at torch's default, 1e-3); steps: timed steps per repeat (None:
    ``epochs`` of an epoch, or default_steps when both are None); repeats: timed rounds
    (medians reported); warmup: untimed steps first (at most; warm-up stops after
    warmup_budget_s seconds, but runs at least 2 steps); device: where the torch engines and
    floor run; blas_threads: a thread count for NumPy's BLAS and torch, or "auto" (measured per
    case, backprop.threads); budget_s: default_steps' seconds per repeat of the slowest engine;
    phases: whether to run the per-phase pass; floor_min_time: seconds each candidate
    formulation is timed per round when the floor is chosen (floor.time_candidates);
    settle_s: idle seconds whenever the timing switches from one library's GEMMs to the other's
    (see settle()).
    """

    dtype: str = "float32"
    optimizer: str = "sgd"
    steps: int | None = None
    epochs: float | None = None
    repeats: int = 5
    warmup: int = 20
    device: str = "cpu"
    blas_threads: int | str = AUTO
    budget_s: float = 1.0
    warmup_budget_s: float = 1.0
    phases: bool = True
    floor_min_time: float = 1e-3
    settle_s: float = 0.3


def default_steps(steps_per_epoch: int, step_seconds: float, budget_s: float, minimum: int = 10) -> int:
    """Timed steps per repeat when none are given: a quarter epoch (at least MIN_STEPS, so that
    the large batches' short epochs do not trip noise_warning), but no more than fit in
    ``budget_s`` seconds of the slowest engine (``step_seconds`` a step), and at least ``minimum``."""
    quarter = max(minimum, MIN_STEPS, steps_per_epoch // 4)
    if step_seconds <= 0 or not math.isfinite(step_seconds):
        return quarter
    return min(quarter, max(minimum, math.ceil(budget_s / step_seconds)))


def below_floor(ratio: float) -> bool:
    """An engine faster than its floor: the floor missed a faster formulation (or the machine's
    speed changed between them); the row is flagged and bench warns."""
    return ratio < 1.0


def machine_info() -> dict[str, Any]:
    """Cores, versions, BLAS and thread settings of this machine, for bench.json."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "usable_cores": cpu_count(), "numpy": np.__version__,
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


def _time(fn: Callable[[int], object], steps: int, sync: Callable[[], None]) -> float:
    """Seconds per call, over ``steps`` calls."""
    sync()
    start = time.perf_counter()
    for i in range(steps):
        fn(i)
    sync()
    return (time.perf_counter() - start) / steps


def settle(seconds: float) -> None:
    """Sleep ``seconds`` before timing another library's work.

    Why: after a call, OpenBLAS's worker threads spin for about 2**28 cycles (its THREAD_TIMEOUT,
    ~0.1 s) and torch's OpenMP workers spin too, waiting for the next parallel region. On a
    2-core machine a spinning worker of one library takes a core from the other: torch's GEMMs
    timed right after NumPy's ran up to 2x slower (its floor above the autograd engine that
    contains the same GEMMs). So each repeat times one library's floor and engines together,
    and the switch to the other library waits here first.
    """
    if seconds > 0:
        time.sleep(seconds)


def library_groups(runners: Sequence[Any], first: int = 0) -> list[tuple[str, list[Any]]]:
    """``runners`` grouped by their floor library (each keeps its order within the group), the
    groups in sorted library order rotated by ``first`` (so no library always goes first)."""
    libraries = sorted({r.library for r in runners})
    shift = first % len(libraries) if libraries else 0
    ordered = libraries[shift:] + libraries[:shift]
    return [(library, [r for r in runners if r.library == library]) for library in ordered]


def _indexed(fn: Callable[[], object]) -> Callable[[int], object]:
    def call(i: int) -> object:
        return fn()

    return call


def _warm(fn: Callable[[int], object], steps: int, budget_s: float, sync: Callable[[], None]) -> None:
    """Up to ``steps`` untimed calls (at least 2), stopping once ``budget_s`` seconds have passed."""
    start = time.perf_counter()
    for i in range(max(2, steps)):
        fn(i)
        sync()
        if i >= 1 and time.perf_counter() - start > budget_s:
            break


@dataclass
class Runner:
    """One row's step: ``train(i)`` a full step on batch i, ``feed(i)`` only its batch,
    ``phased(i, totals)`` a step adding each phase's seconds to ``totals``; ``library`` its floor."""

    name: str
    train: Callable[[int], object]
    feed: Callable[[int], object]
    phased: Callable[[int, dict[str, float]], None]
    sync: Callable[[], None]
    library: str
    notes: dict[str, Any] = field(default_factory=dict)
    net: Any = None  # the hand-written net, whose layers the per-layer pass times (None: no such pass)


def _phase_clock(sync: Callable[[], None]) -> Callable[[], float]:
    def clock() -> float:
        sync()
        return time.perf_counter()

    return clock


def engine_runner(engine: Engine, workload: str, batch: int, settings: BenchSettings, x: np.ndarray,
                  y: np.ndarray) -> Runner:
    """A Runner training ``engine``'s network of ``workload`` on x (N, 784), y (N,) as
    backprop.training.make_step does (lenet's batches as (B, 1, 28, 28) views, lstm's as (B, 28, 28);
    lstm's gradients clipped as its preset clips them, in the update phase)."""
    from .training import gradient_clipper, make_step, step_backward

    network = workload_network(workload)
    net = engine.build_net(network, WORKLOADS[workload]["init"], 0, settings.dtype, training=True)
    opt = engine.build_optimizer(net, settings.optimizer, workload_lr(workload, settings.optimizer))
    loss_fn = engine.loss()
    backward = step_backward(net)
    zero_grad = opt.zero_grad if engine.traits.accumulates_gradients else None
    max_norm = WORKLOADS[workload].get("clip_grad_norm")
    clip = gradient_clipper(engine) if max_norm is not None else None

    def phases(xb: Any, yb: Any) -> Iterator[None]:
        logits = net.forward(xb)
        yield
        loss_fn.forward(logits, yb)
        yield
        if zero_grad is not None:
            zero_grad()
        backward(loss_fn.backward())
        yield
        if clip is not None and max_norm is not None:
            clip(net, max_norm)
        opt.step()
        yield
        engine.argmax_hits(logits, yb)

    runner = _runner(engine.spec, engine, image_view(x, network), y, batch,
                     make_step(engine, net, opt, loss_fn, max_norm), phases, gemm_library(engine))
    runner.net = net
    return runner


PhaseSteps = Callable[[Any, Any], Iterator[None]]


def _runner(name: str, engine: Engine, x: np.ndarray, y: np.ndarray, batch: int,
            step: Callable[[Any, Any], object], phases: PhaseSteps, library: str,
            notes: dict[str, Any] | None = None) -> Runner:
    """A Runner of ``step`` on ``engine``'s batches of x, y (the same seeded order for every row;
    only full batches). ``phases(xb, yb)`` is the same step as a generator that yields after its
    forward, loss, backward and update, so the phase pass reads the clock in between."""
    feeder = engine.feeder(x, y, batch, seed=0)
    feeder.start_epoch(0)
    full = (len(y) // batch) or 1

    def train(i: int) -> None:
        step(*feeder.batch(i % full))

    def feed(i: int) -> None:
        feeder.batch(i % full)

    clock = _phase_clock(engine.synchronize)

    def phased(i: int, totals: dict[str, float]) -> None:
        times = [clock()]
        xb, yb = feeder.batch(i % full)
        times.append(clock())
        for _ in phases(xb, yb):
            times.append(clock())
        times.append(clock())
        for name, start, end in zip(PHASES, times, times[1:]):
            totals[name] += end - start

    return Runner(name, train, feed, phased, engine.synchronize, library, notes=notes or {})


class _DropNoCudaNotice(logging.Filter):
    """Drops torch's "No CUDA runtime is found" notice (expected on a CPU-only machine)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No CUDA runtime is found")


def quiet_cuda_notice() -> None:
    """Drop torch's "No CUDA runtime is found" log line in this process (once).

    Compiling logs it on every CPU-only machine: a line of noise above bench's table, not a
    failure (a failure raises, and its message becomes the row's reason). Only that message is
    dropped; the logger's other records still show."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _DropNoCudaNotice) for f in logger.filters):
        logger.addFilter(_DropNoCudaNotice())


class CompiledReference:
    """The torch.compile rows: what a compiler makes of autograd and of hand-written backprop.

    COMPILED_AUTOGRAD: the workload as a torch.nn.Sequential (built by the autograd engine), its
    forward and loss compiled together by torch.compile, trained with torch.optim's own
    optimizer. COMPILED_TORCH: the torch engine's whole hand-written step (forward, written-out
    backward, optimizer update) compiled as one graph (torch_net.compiled). torch.compile needs a
    working C++ toolchain; available() tries it once on a tiny model and keeps the reason it
    failed (``reason``), so bench can skip the rows with that reason.
    """

    def __init__(self, autograd: Engine, torch_engine: Engine | None = None, known_available: bool = False) -> None:
        """``known_available``: the caller already found torch.compile working (no second probe)."""
        self.autograd = autograd
        self.torch_engine = torch_engine
        self.reason: str | None = None
        self._checked = known_available
        self._models: dict[str, Any] = {}

    def available(self) -> bool:
        """Whether torch.compile works here (tried once, on a tiny model: forward and backward)."""
        if not self._checked:
            self._checked = True
            quiet_cuda_notice()
            from torch_net.compiled import compile_available

            self.reason = compile_available()
        return self.reason is None

    def _model(self, workload: str, settings: BenchSettings) -> tuple[Any, Any, Any]:
        key = f"{workload}/{settings.dtype}/{settings.optimizer}"
        if key not in self._models:
            import torch

            net = self.autograd.build_net(workload_network(workload), WORKLOADS[workload]["init"], 0,
                                          settings.dtype, training=True)
            module = net.module
            cross_entropy = torch.nn.functional.cross_entropy

            def forward_loss(xb: Any, yb: Any) -> tuple[Any, Any]:
                logits = module(xb)
                return logits, cross_entropy(logits, yb)

            lr = workload_lr(workload, settings.optimizer)
            optim = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[settings.optimizer]
            self._models[key] = (module, torch.compile(forward_loss), optim(module.parameters(), lr=lr))
        return self._models[key]

    def _clip(self, workload: str, module: Any) -> Callable[[], object]:
        """torch.nn.utils.clip_grad_norm_ at the workload's clip_grad_norm (lstm's), or nothing."""
        max_norm = WORKLOADS[workload].get("clip_grad_norm")
        if max_norm is None:
            return lambda: None
        import torch

        parameters = list(module.parameters())
        return lambda: torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def runners(self, workload: str, batch: int, settings: BenchSettings, x: np.ndarray, y: np.ndarray) -> list[Runner]:
        """The compiled rows' Runners (compiled at their first steps, which bench's warm-up runs
        untimed): autograd's, and the torch engine's when one was given."""
        rows = [self.runner(workload, batch, settings, x, y)]
        if self.torch_engine is not None:
            rows.append(self.torch_runner(workload, batch, settings, x, y))
        return rows

    def runner(self, workload: str, batch: int, settings: BenchSettings, x: np.ndarray, y: np.ndarray) -> Runner:
        """A Runner for the compiled autograd model."""
        module, forward_loss, opt = self._model(workload, settings)
        engine = self.autograd
        hits = engine.argmax_hits
        clip = self._clip(workload, module)

        def step(xb: Any, yb: Any) -> tuple[float, int]:
            logits, loss = forward_loss(xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip()
            opt.step()
            return float(loss.detach()), hits(logits, yb)

        def phases(xb: Any, yb: Any) -> Iterator[None]:
            logits, loss = forward_loss(xb, yb)  # one compiled graph: forward and loss fused
            yield
            float(loss.detach())
            yield
            opt.zero_grad(set_to_none=True)
            loss.backward()
            yield
            clip()
            opt.step()
            yield
            hits(logits, yb)

        return _runner(COMPILED_AUTOGRAD, engine, image_view(x, workload_network(workload)), y, batch, step, phases,
                       TORCH_FLOOR, notes={"phases_note": "forward includes the loss (compiled together)"})

    def torch_runner(self, workload: str, batch: int, settings: BenchSettings, x: np.ndarray,
                     y: np.ndarray) -> Runner:
        """A Runner for the torch engine's hand-written step compiled whole (torch_net.compiled)."""
        from torch_net.compiled import compiled_step

        engine = self.torch_engine
        assert engine is not None
        network = workload_network(workload)
        net = engine.build_net(network, WORKLOADS[workload]["init"], 0, settings.dtype, training=True)
        opt = engine.build_optimizer(net, settings.optimizer, workload_lr(workload, settings.optimizer))
        step = compiled_step(net, opt, engine.loss(), WORKLOADS[workload].get("clip_grad_norm"))

        def phases(xb: Any, yb: Any) -> Iterator[None]:
            step(xb, yb)  # one graph: its phases cannot be told apart
            yield
            yield
            yield
            yield

        return _runner(COMPILED_TORCH, engine, image_view(x, network), y, batch, step, phases, TORCH_FLOOR,
                       notes={"phases_note": "one compiled graph: forward holds the whole step"})


def choose_floor(library: str, gemms: Sequence[Any], settings: BenchSettings,
                 sync: Callable[[], None]) -> tuple[Floor, int | None, dict[int, float]]:
    """Set ``library``'s thread count (settings.blas_threads; "auto": the count at which this
    case's floor, its formulations chosen at that count, is fastest) and choose its floor.

    Returns (the floor at the count applied, that count, {count: the floor's estimated seconds
    per step} for every count tried). On a GPU, torch's count is left as it is.
    """
    device = settings.device if library == TORCH_FLOOR else "cpu"
    if library == TORCH_FLOOR and not device.startswith("cpu"):
        counts: list[int | None] = [None]
    elif settings.blas_threads == AUTO:
        counts = list(thread_candidates(cpu_count()))
    else:
        counts = [int(settings.blas_threads)]
    floors: dict[int | None, Floor] = {}
    for count in counts:
        if count is not None:
            apply_threads(library, count)
        floors[count] = make_floor(library, None, 0, settings.dtype, device, gemms=gemms,
                                    min_time=settings.floor_min_time, sync=sync)
    probe = {count: floor.estimate for count, floor in floors.items() if count is not None}
    chosen = choose_threads(probe) if probe else None
    if chosen is not None:
        apply_threads(library, chosen)
    return floors[chosen], (chosen if chosen is not None else threads_of(library)), probe


def bench_case(engines: list[Engine], workload: str, batch: int, settings: BenchSettings, x: np.ndarray,
               y: np.ndarray, compiled: CompiledReference | None = None) -> list[dict[str, Any]]:
    """Time every engine's training step (feed included) and its floor on one workload and batch size.

    x: (N, 784) in settings.dtype, y: (N,) labels; ``compiled``: add its torch.compile'd row
    when it is available. Returns one row per engine: seconds per epoch (of N samples),
    samples/s, the floor's seconds per epoch and its formulations, the ratio (and below_floor),
    the thread counts, the share of a step spent feeding, per-phase seconds per step, GFLOP/s.
    Raises KeyError for an unknown workload, ValueError for a batch larger than the data (it
    would be timed as a smaller one).
    """
    if workload not in WORKLOADS:
        raise KeyError(workload)
    if batch > len(y):
        raise ValueError(f"batch size {batch} is larger than the {len(y)} samples")
    steps_per_epoch = -(-len(y) // batch)
    runners = [engine_runner(engine, workload, batch, settings, x, y) for engine in engines]
    if compiled is not None and compiled.available():
        runners.extend(compiled.runners(workload, batch, settings, x, y))
    gemms = workload_gemms(workload, batch)
    floors: dict[str, tuple[Floor, int | None, dict[int, float], Callable[[], None]]] = {}
    estimates = []
    for library, group in library_groups(runners):
        settle(settings.settle_s)
        sync = group[0].sync
        floor, count, probe = choose_floor(library, gemms, settings, sync)
        floors[library] = (floor, count, probe, sync)
        _warm(_indexed(floor), settings.warmup, settings.warmup_budget_s, sync)
        for runner in group:
            _warm(runner.train, settings.warmup, settings.warmup_budget_s, runner.sync)
            # The fastest of 3 single steps: a compiled row may still compile again at its first
            # steps after the warm-up (torch+compile makes its step count dynamic at its third
            # step), and one such step taken as the estimate cut every row's timing to 10 steps.
            estimates.append(min(_time(runner.train, 1, runner.sync) for _ in range(3)))
    if settings.steps:
        steps = settings.steps
    elif settings.epochs:
        steps = max(1, int(settings.epochs * steps_per_epoch))
    else:
        steps = default_steps(steps_per_epoch, max(estimates), settings.budget_s)

    times: dict[str, list[float]] = {k: [] for k in [*(r.name for r in runners), *(f"floor:{r.name}" for r in runners),
                                                     *(f"feed:{r.name}" for r in runners)]}
    # Each repeat: one library's engines, then (after settle) the other's; who goes first rotates,
    # within the library and between libraries. Every engine is timed right beside a timing of
    # its floor (before it in even repeats, after it in odd ones), and the row's ratio is taken
    # from that pair: a floor timed seconds later, after the other engines, let the machine's
    # drift into the ratio (spreads of 20-50% over 5 repeats on a noisy 2-core VM).
    for repeat in range(settings.repeats):
        for library, group in library_groups(runners, first=repeat):
            if len(floors) > 1:
                settle(settings.settle_s)
            floor, _count, _probe, sync = floors[library]
            shift = repeat % len(group)
            for runner in group[shift:] + group[:shift]:
                pair = [(runner.name, runner.train, runner.sync), (f"floor:{runner.name}", _indexed(floor), sync)]
                for key, fn, sync_fn in (pair if repeat % 2 else pair[::-1]):
                    times[key].append(_time(fn, steps, sync_fn))
                times[f"feed:{runner.name}"].append(_time(runner.feed, steps, runner.sync))

    phases: dict[str, dict[str, float] | None] = {r.name: None for r in runners}
    if settings.phases:
        for _library, group in library_groups(runners):
            if len(floors) > 1:
                settle(settings.settle_s)
            for runner in group:
                totals = dict.fromkeys(PHASES, 0.0)
                for i in range(steps):
                    runner.phased(i, totals)
                phases[runner.name] = {name: total / steps for name, total in totals.items()}

    layers: dict[str, list[dict[str, Any]] | None] = {r.name: None for r in runners}
    if settings.phases:
        for _library, group in library_groups(runners):
            if len(floors) > 1:
                settle(settings.settle_s)
            for runner in group:
                layers[runner.name] = layer_profile(runner, steps)

    flops = gemm_flops(gemms)
    rows = []
    for runner in runners:
        floor, count, probe, _sync = floors[runner.library]
        per_step = statistics.median(times[runner.name])
        floor_times = times[f"floor:{runner.name}"]  # the floor timed beside this engine, each repeat
        floor_step = statistics.median(floor_times)
        feed_step = statistics.median(times[f"feed:{runner.name}"])
        # Each repeat's ratio pairs the engine with its floor timed moments apart.
        ratios = spread([t / f for t, f in zip(times[runner.name], floor_times)])
        floors_spread = spread(floor_times)
        ratio = ratios["median"]
        rows.append({
            "engine": runner.name, "workload": workload, "batch_size": batch, "dtype": settings.dtype,
            "s_per_epoch": per_step * steps_per_epoch,
            "samples_per_s": batch / per_step,
            "floor_s_per_epoch": floor_step * steps_per_epoch,
            "floor_samples_per_s": batch / floor_step,
            "ratio_to_floor": ratio,
            "ratio_min": ratios["min"], "ratio_max": ratios["max"], "ratio_q1": ratios["q1"], "ratio_q3": ratios["q3"],
            "ratio_spread": ratios["spread"],
            "s_per_epoch_min": min(times[runner.name]) * steps_per_epoch,
            "s_per_epoch_max": max(times[runner.name]) * steps_per_epoch,
            "floor_spread": floors_spread["spread"],
            "repeat_s": times[runner.name], "floor_repeat_s": floor_times,  # seconds per step, each repeat
            "unstable": unstable(ratios["spread"], floors_spread["spread"]),
            "below_floor": below_floor(ratio),
            "floor_library": runner.library,
            "floor_formulations": [choice.to_json() for choice in floor.choices],
            "threads": count,
            "blas_threads": threads_of(NUMPY_FLOOR),
            "torch_threads": threads_of(TORCH_FLOOR),
            "threads_setting": settings.blas_threads,
            "threads_probe_s": {str(k): v for k, v in probe.items()},
            "threads_rule": rule_threads(gemms),  # what `train`'s auto (a rule, no timing) takes here when idle
            "feed_fraction": feed_step / per_step,
            "phases_s": phases[runner.name],
            "layers_ms": layers[runner.name],
            "pid": os.getpid(),
            "gflops": flops / per_step / 1e9,
            "steps_timed": steps, "repeats": settings.repeats,
            "seconds_per_repeat": per_step * steps,
            **runner.notes,
        })
    return rows


@dataclass(frozen=True)
class CaseRequest:
    """One case of a bench run, as a fresh process needs it: the engines by the names --engines
    took (a module path is imported again there), their device, the workload and batch size, the
    settings, the data (backprop.datasets.training_arrays' dataset and data_dir: None for the
    synthetic set), and whether to add the compiled rows (torch.compile already found working)."""

    engines: tuple[str, ...]
    device: str
    workload: str
    batch: int
    settings: BenchSettings
    dataset: str | None
    data_dir: str | None
    compile: bool


def run_case(request: CaseRequest) -> list[dict[str, Any]]:
    """bench_case for ``request`` in this process, the data read and the engines loaded here, under
    training_numerics as `backprop train` runs. Raises what bench_case, load_engine and
    training_arrays raise."""
    from .datasets import training_arrays
    from .engines import load_engine, training_numerics

    engines = [load_engine(spec, request.device) for spec in request.engines]
    x, y, _ = training_arrays(request.dataset, request.data_dir, request.settings.dtype)
    compiled = None
    if request.compile:
        compiled = CompiledReference(load_engine("autograd", request.device), load_engine("torch", request.device),
                                     known_available=True)  # bench probed it once, not once per case
        quiet_cuda_notice()
    with training_numerics():
        return bench_case(engines, request.workload, request.batch, request.settings, x, y, compiled)


def _case_process(request: CaseRequest, connection: Any) -> None:
    """The body of run_isolated's process: run_case, its rows or the exception it raised sent back
    (an exception that cannot be pickled goes back as a RuntimeError with its message). It ends
    itself within a second if bench's process dies (killed, SIGTERM) instead of timing on alone."""
    parent = os.getppid()

    def follow_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)  # one wake-up a second: microseconds against a timing of seconds
        os._exit(1)

    threading.Thread(target=follow_parent, daemon=True).start()
    try:
        result: tuple[str, Any] = ("rows", run_case(request))
    except BaseException as error:  # everything goes back to be raised there, Ctrl-C included
        result = ("error", error)
    try:
        connection.send(result)
    except Exception:  # an exception (or row) that does not pickle
        connection.send(("error", RuntimeError(f"{type(result[1]).__name__}: {result[1]}")))
    finally:
        connection.close()


def run_isolated(request: CaseRequest) -> list[dict[str, Any]]:
    """run_case in a fresh Python process (spawned, so nothing of this one comes along: no thread
    pool, allocator state, cache or compiled graph of an earlier case), waiting for its rows.

    Raises what run_case raises there, and RuntimeError when that process dies without an
    answer. Interrupted here (Ctrl-C, a signal), the process is terminated at once instead of
    finishing its case.
    """
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_case_process, args=(request, send), daemon=True)
    process.start()
    send.close()  # only the child writes: recv() then sees EOF if it dies
    try:
        kind, value = receive.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"the process timing {request.workload} at batch {request.batch} died "
                           f"(exit code {process.exitcode}: out of memory, or killed)") from None
    except BaseException:
        process.terminate()
        raise
    finally:
        receive.close()
    process.join()
    if kind == "error":
        raise value
    return value  # type: ignore[no-any-return]


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, median, max of ``values`` and their spread, the interquartile range over the median,
    (Q3 - Q1) / median (quartiles by statistics.quantiles' inclusive method; 0 for one value,
    inf when the median is 0 and the values differ). ValueError for no values.

    Why the interquartile range and not (max - min): on a shared machine one repeat in five can
    run 3x slower (another tenant's burst), and the range then says more about that one repeat
    than about how far the median can move; the quartiles of 5 repeats are the 2nd and 4th."""
    if not values:
        raise ValueError("spread of no values")
    median = statistics.median(values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (median,) * 3
    return {"min": min(values), "median": median, "max": max(values), "q1": q1, "q3": q3,
            "spread": (q3 - q1) / median if median > 0 else (0.0 if q3 == q1 else math.inf)}


def unstable(ratio_spread: float, floor_spread: float, threshold: float = UNSTABLE) -> bool:
    """Whether a row is unstable: the interquartile range of its ratio to the floor, or of the
    floor itself, over the repeats exceeds ``threshold`` of its median (the machine's speed
    changed while it ran)."""
    return ratio_spread > threshold or floor_spread > threshold


def layer_profile(runner: Runner, steps: int) -> list[dict[str, Any]] | None:
    """Milliseconds per step of each top-level layer's forward and backward, over ``steps`` steps
    of ``runner`` with a device synchronisation around every call: ``[{"layer": "3 Conv2d(...)",
    "forward_ms": ..., "backward_ms": ...}, ...]`` in forward order. None for a runner without a
    hand-written net (the autograd and compiled rows), whose layers are not called one by one."""
    layers = getattr(runner.net, "layers", None)
    if not layers or not all(callable(getattr(layer, "forward", None)) and callable(getattr(layer, "backward", None))
                             for layer in layers):
        return None
    clock = _phase_clock(runner.sync)
    totals = [{"forward": 0.0, "backward": 0.0, "calls": 0} for _ in layers]

    def timed(call: Callable[..., Any], total: dict[str, float], phase: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            out = call(*args, **kwargs)
            total[phase] += clock() - start
            total["calls"] += phase == "forward"
            return out

        return run

    # Instance attributes shadow the class's methods for as long as the pass runs; the tree calls
    # layer.forward and layer.backward through the instance, so it runs the timed ones.
    for layer, total in zip(layers, totals):
        layer.forward = timed(layer.forward, total, "forward")
        layer.backward = timed(layer.backward, total, "backward")
    try:
        for i in range(steps):
            runner.train(i)
    finally:
        for layer in layers:
            del layer.forward, layer.backward
    if not all(total["calls"] for total in totals):
        return None
    return [{"layer": f"{index} {repr(layer).splitlines()[0]}", "forward_ms": 1e3 * total["forward"] / steps,
             "backward_ms": 1e3 * total["backward"] / steps}
            for index, (layer, total) in enumerate(zip(layers, totals))]


def formulation_summary(rows: list[dict[str, Any]]) -> list[str]:
    """One line per (workload, batch, floor library): the thread count and how many of the
    floor's products each formulation won, e.g. ``notebook 32 numpy floor, 1 thread (train's auto:
    2): matmul out= (in,out) x3, dot out= (out,in) x14`` (the count measured fastest, and the one
    `train`'s auto rule would take: backprop.threads.rule_threads)."""
    lines, seen = [], set()
    for r in rows:
        key = (r["workload"], r["batch_size"], r["floor_library"])
        if key in seen:
            continue
        seen.add(key)
        counts: dict[str, int] = {}
        for choice in r["floor_formulations"]:
            counts[choice["formulation"]] = counts.get(choice["formulation"], 0) + 1
        won = ", ".join(f"{name} x{n}" for name, n in counts.items())
        threads = f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}" if r["threads"] else "device"
        if r.get("threads_rule") is not None:  # bench measures; train's auto follows a fixed rule
            threads += f" (train's auto: {r['threads_rule']})"
        lines.append(f"{r['workload']} {r['batch_size']} {r['floor_library']} floor, {threads}: {won}")
    return lines


def format_table(rows: list[dict[str, Any]], header: bool = True) -> str:
    """bench's rows as a fixed-width table (with a header and rule unless ``header`` is False): the
    median ratio to the floor, marked ``!`` below the floor, and its spread over the repeats (the
    interquartile range over the median), marked ``?`` when the row is unstable."""
    head = (f"{'workload':<9} {'batch':>5} {'engine':<16} {'s/epoch':>8} {'samples/s':>11} "
            f"{'floor s/ep':>10} {'x floor':>7} {'spread':>7} {'thr':>3} {'feed %':>6} {'GFLOP/s':>8}")
    lines = [head, "-" * len(head)] if header else []
    for r in rows:
        mark = "!" if r.get("below_floor") else " "
        shaky = "?" if r.get("unstable") else " "
        spread_text = f"{100 * r['ratio_spread']:.0f}%" if "ratio_spread" in r else "-"
        lines.append(
            f"{r['workload']:<9} {r['batch_size']:>5} {r['engine']:<16} {r['s_per_epoch']:>8.3f} "
            f"{r['samples_per_s']:>11,.0f} {r['floor_s_per_epoch']:>10.3f} {r['ratio_to_floor']:>6.2f}{mark} "
            f"{spread_text:>6}{shaky} {r.get('threads') or '-':>3} {100 * r['feed_fraction']:>6.1f} {r['gflops']:>8.1f}"
        )
    return "\n".join(lines)


def unstable_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """One line per unstable row, naming it, its ratio's range and its floor's spread."""
    return [f"{r['engine']} on {r['workload']} at batch {r['batch_size']} is unstable: its ratio to the floor "
            f"ranged {r['ratio_min']:.2f}-{r['ratio_max']:.2f}x over {r['repeats']} repeats (interquartile "
            f"{100 * r['ratio_spread']:.0f}% of the median) and its floor's {100 * r['floor_spread']:.0f}% (over "
            f"{100 * UNSTABLE:.0f}%: the machine's speed changed while it ran; a quiet machine, --blas-threads 1 or "
            "more --repeats give steadier numbers)"
            for r in rows if r.get("unstable")]


def floor_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """One line per row that ran below its floor (below_floor), naming it and the ratio."""
    return [f"{r['engine']} on {r['workload']} at batch {r['batch_size']} ran below its {r['floor_library']} "
            f"floor ({r['ratio_to_floor']:.2f}x): the floor is not a floor here (a faster formulation it lacks, "
            f"or the machine's speed changed between them)" for r in rows if r.get("below_floor")]


def noise_warning(rows: list[dict[str, Any]]) -> str | None:
    """A warning when the rows were timed over too little to be more than noise (a repeat of
    fewer than MIN_STEPS steps that also lasted under MIN_REPEAT_S seconds, or fewer than
    MIN_REPEATS repeats); None otherwise."""
    if not rows:
        return None
    short = [r for r in rows if r["steps_timed"] < MIN_STEPS and r.get("seconds_per_repeat", 0.0) < MIN_REPEAT_S]
    repeats = min(r["repeats"] for r in rows)
    problems = []
    if short:
        steps = min(r["steps_timed"] for r in short)
        problems.append(f"{steps} timed steps per repeat (use --steps {MIN_STEPS} or more; the default is a quarter "
                        "epoch, at most about a second per engine)")
    if repeats < MIN_REPEATS:
        problems.append(f"{repeats} repeat{'' if repeats == 1 else 's'} (use --repeats {MIN_REPEATS} or more)")
    if not problems:
        return None
    return f"only {' and '.join(problems)}: timings this short are mostly noise, compare them with care"
