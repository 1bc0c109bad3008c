"""How many threads the engines' GEMMs run on: NumPy's BLAS (through threadpoolctl, the
well-kept library for exactly this) and torch's intra-op pool (torch.set_num_threads).

Why it matters: OpenBLAS splits every GEMM over all cores by default, and on the small
products of a batch-32 step the second thread costs more than it gives (its half of each
result lands in the other core's cache, where the next NumPy call reads it back). Large
products do gain from it. So the count is chosen per run:

* ``N``: N threads for the whole process.
* ``auto`` for `train` and `compare` (auto_threads): a rule, never a timing. One thread per
  MFLOP of the step's largest GEMM, at least 1 and at most the cores,
  ``clamp(floor(max 2 m k n / 1e6), 1, cores)`` (rule_threads): on the 2-core machine of the
  bench in docs/benchmarks.md every workload's products (3 MFLOP and up) get 2 threads, the count that was
  fastest there at every batch size on an idle machine; a product of a few hundred kFLOP gets 1.
  Then capped by the cores the machine can give now: the cores less the load (current_load: the
  1-minute load average, or the processes running at this moment when fewer), rounded, at
  least 1 (free_cores). A second thread on a core another process is using does
  not add speed, it waits for it at every product: with one competing process on 2 cores a
  torch epoch took 1.80 s on 2 threads against 0.36 s on 1. `compare` runs NumPy's BLAS and
  torch in one process, one after the other at every step; when both libraries are in the
  run, auto gives 1 thread, because each pool's threads spin for a while after a product and
  take the cores the other pool's threads need (measured in docs/benchmarks.md). The run's
  header line says which of these set the count. A run records the count it used
  (checkpoint and config.json) and its resumed sessions reuse it: float32 results are
  bitwise reproducible only at equal thread counts (docs/benchmarks.md), so give
  ``--blas-threads N`` where that matters across machines or loads.
* ``auto`` for `bench` (benchmark.choose_floor): measured once per case. The case's floor
  (backprop.floor, its formulations chosen at each count) is timed at each count of
  thread_candidates() (1, 2, 4, ... up to the cores) and the fastest count is taken
  (choose_threads: the lowest time; a tie goes to fewer threads, which leave cores to
  everything else). bench also reports the count
  train's rule gives for the case.

Counts are process-wide: NumPy's BLAS and torch each have one pool per process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .gemms import Gemm, network_gemms

AUTO = "auto"
_limiters: list[Any] = []  # threadpoolctl limiters in force (kept so the limit is not dropped)


def parse_threads(text: str) -> int | str:
    """--blas-threads' value: a positive integer or "auto"; ValueError otherwise (one line)."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a positive number of threads or 'auto', got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected a positive number of threads or 'auto', got {text!r}")
    return value


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def thread_candidates(cores: int) -> list[int]:
    """The counts ``auto`` tries: 1, 2, 4, ... below ``cores``, and ``cores`` itself."""
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return [*counts, max(1, cores)]


def choose_threads(times: dict[int, float]) -> int:
    """The count with the lowest time (seconds of the same work); ties go to fewer threads.
    ValueError for an empty dict."""
    if not times:
        raise ValueError("no thread counts were timed")
    return min(times, key=lambda n: (times[n], n))


MFLOP_PER_THREAD = 1_000_000  # rule_threads: FLOPs of the largest GEMM per thread


def rule_threads(gemms: Sequence[Gemm], cores: int | None = None) -> int:
    """`train`'s deterministic ``auto``: ``clamp(floor(max_g 2 m k n / 1e6), 1, cores)``, one thread
    per MFLOP of the largest product of ``gemms`` (one training step's), at least 1 (also for no
    GEMMs) and at most ``cores`` (default cpu_count())."""
    largest = max((g.flops for g in gemms), default=0)
    cores = cpu_count() if cores is None else cores
    return max(1, min(max(1, cores), largest // MFLOP_PER_THREAD))


def oversubscription_warning(count: int, cores: int | None = None) -> str | None:
    """One line when ``count`` threads exceed the ``cores`` (default cpu_count()) this process may
    run on (the threads then take turns on the cores at every GEMM: an epoch of the numpy engine
    was 150x slower at 64 threads on 2 cores); None otherwise."""
    cores = cpu_count() if cores is None else cores
    if count <= cores:
        return None
    plural = "s" if cores != 1 else ""
    return (f"{count} threads for the GEMMs are more than the {cores} core{plural} this process may run on: "
            f"they will take turns on them and every matrix product slows down (--blas-threads {cores} or fewer "
            "runs faster)")


def apply_threads(library: str, count: int) -> None:
    """Run ``library``'s GEMMs ("numpy": its BLAS, via threadpoolctl; "torch":
    torch.set_num_threads) on ``count`` threads for the rest of the process."""
    if library == "numpy":
        from threadpoolctl import ThreadpoolController

        _limiters.append(ThreadpoolController().limit(limits=count, user_api="blas"))
    else:
        import torch

        torch.set_num_threads(count)


def current_threads() -> dict[str, int | None]:
    """{"numpy_blas": threads of NumPy's BLAS, "torch": torch's intra-op threads}; None where
    unknown (no BLAS found by threadpoolctl, torch not loaded)."""
    from threadpoolctl import threadpool_info

    blas = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    torch = sys.modules.get("torch")
    return {"numpy_blas": blas[0] if blas else None,
            "torch": torch.get_num_threads() if torch is not None else None}


def threads_of(library: str) -> int | None:
    """The count ``library``'s GEMMs run on now (current_threads)."""
    return current_threads()["numpy_blas" if library == "numpy" else "torch"]


def config_gemms(config: Any) -> list[Gemm]:
    """The GEMMs of one training step of ``config`` (a TrainConfig) at its batch size."""
    return network_gemms(config.network, config.batch_size)


def current_load(proc_loadavg: str = "/proc/loadavg") -> float | None:
    """How many other processes want a core now: the 1-minute load average, or, when fewer, the
    processes running at this moment less this one (the running count in Linux's
    ``proc_loadavg``). The average takes minutes to forget a process that has ended, a previous
    run's included: after two busy threads stop it still reads 0.5 some 80 s later
    (2 exp(-t / 60 s)). None where the OS reports no load (Windows)."""
    try:
        average = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    running = running_others(proc_loadavg)
    return average if running is None else min(average, float(running))


def running_others(proc_loadavg: str = "/proc/loadavg") -> int | None:
    """The processes (threads) running or ready to run at this moment, less the one reading:
    ``/proc/loadavg``'s fourth field, "running/total"; None where there is no such file."""
    try:
        with open(proc_loadavg, encoding="ascii") as f:
            return max(0, int(f.read().split()[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        return None


def free_cores(cores: int | None = None, load: float | None = None) -> int:
    """Cores no other process is using now: ``cores`` (default cpu_count()) less the ``load``
    (current_load) rounded to the nearest whole process, at least 1; all of them when ``load`` is None."""
    cores = cpu_count() if cores is None else max(1, cores)
    return cores if load is None else max(1, min(cores, cores - int(load + 0.5)))


@dataclass(frozen=True)
class ThreadChoice:
    """A session's GEMM thread count and why (the run's header line prints ``reason``)."""

    count: int
    reason: str

    def describe(self, pool: str) -> str:
        """"2 BLAS threads (auto: ...)": the count with ``pool``'s name and the reason."""
        return f"{self.count} {pool} thread{'s' if self.count != 1 else ''} ({self.reason})"


def auto_threads(gemms: Sequence[Gemm], cores: int | None = None, load: float | None = None,
                 mixed_pools: bool = False) -> ThreadChoice:
    """``auto``'s count for a step of ``gemms``: rule_threads, capped by free_cores(cores, load), and
    1 when ``mixed_pools`` (NumPy's BLAS and torch both run in the process); with the reason."""
    cores = cpu_count() if cores is None else max(1, cores)
    rule = rule_threads(gemms, cores)
    free = free_cores(cores, load)
    largest = max((g.flops for g in gemms), default=0) / 1e6
    of_cores = f"{cores} core{'s' if cores != 1 else ''}"
    if mixed_pools and rule > 1:
        return ThreadChoice(1, "auto: NumPy's BLAS and torch take turns in this process, and a second thread in "
                               "each would spin on the core the other needs")
    if free < rule:
        return ThreadChoice(free, f"auto: a load of {load:.2f} leaves {free} of the {of_cores} free")
    why = f"auto: one per MFLOP of the largest product ({largest:.1f} MFLOP), at most the {of_cores}"
    return ThreadChoice(rule, why if load is None else f"{why}, load {load:.2f}")


def training_threads(setting: int | str, config: Any, load: float | None = None,
                     mixed_pools: bool = False) -> ThreadChoice:
    """The count a `train` or `compare` session uses: ``setting`` itself, or for "auto"
    auto_threads on ``config``'s step (a TrainConfig, or anything with network and batch_size)
    under the ``load`` (current_load; None: not considered)."""
    if setting == AUTO:
        return auto_threads(config_gemms(config), load=load, mixed_pools=mixed_pools)
    return ThreadChoice(int(setting), f"--blas-threads {int(setting)}")
