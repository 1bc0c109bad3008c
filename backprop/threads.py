"""How many threads the engines' GEMMs run on: NumPy's BLAS (through threadpoolctl, the
well-kept library for exactly this) and torch's intra-op pool (torch.set_num_threads).

Why it matters: OpenBLAS splits every GEMM over all cores by default, and on the small
products of a batch-32 step the second thread costs more than it gives (its half of each
result lands in the other core's cache, where the next NumPy call reads it back). Large
products do gain from it. So the count is chosen per run:

* ``N``: N threads for the whole process.
* ``auto`` for `train` (rule_threads): a fixed rule, never a measurement, so that the same
  command on the same machine always runs on the same count (float32 results depend in their
  last bits on it): one thread per MFLOP of the step's largest GEMM, at least 1 and at most
  the cores, ``clamp(floor(max 2 m k n / 1e6), 1, cores)``. On the 2-core machine of the
  README's bench every workload's products (3 MFLOP and up) get 2 threads, the count that was
  fastest there at every batch size; a product of a few hundred kFLOP gets 1. A run records
  the count it used (checkpoint and config.json), and its resumed sessions reuse it.
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


def training_threads(setting: int | str, config: Any) -> int:
    """The count a `backprop train` run uses: ``setting`` itself, or for "auto" rule_threads on
    ``config``'s step (deterministic: no timing)."""
    return rule_threads(config_gemms(config)) if setting == AUTO else int(setting)
