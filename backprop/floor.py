"""The GEMM floor: only the matrix multiplies one training step needs, timed in the same
library and shapes as the engines run them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Gemm:
    """out (m, n) = a (m, k) @ b (k, n); ``what`` names its role in backprop."""

    what: str
    m: int
    k: int
    n: int

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


def training_gemms(sizes: list[int], batch: int) -> list[Gemm]:
    """Per Linear i (in -> out): forward z = x W (B, in)@(in, out); backward
    grad_W = x^T delta (in, B)@(B, out); and, except for the first layer, whose input
    gradient a training step never needs, dx = delta W^T (B, out)@(out, in)."""
    gemms = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        gemms.append(Gemm(f"fc{i} forward x@W", batch, fan_in, fan_out))
    for i, (fan_in, fan_out) in reversed(list(enumerate(zip(sizes[:-1], sizes[1:])))):
        gemms.append(Gemm(f"fc{i} grad_weight x^T@delta", fan_in, batch, fan_out))
        if i:
            gemms.append(Gemm(f"fc{i} input grad delta@W^T", batch, fan_out, fan_in))
    return gemms


def step_flops(sizes: list[int], batch: int) -> int:
    """Floating-point operations of one training step's GEMMs (2 m k n each)."""
    return sum(g.flops for g in training_gemms(sizes, batch))


def make_floor(library: str, sizes: list[int], batch: int, dtype: str, device: str = "cpu") -> Callable[[], None]:
    """A closure running exactly training_gemms() once, with preallocated operands laid out
    as the engines hold them (transposes as views), results into preallocated outputs.

    library: "numpy" (np.matmul) or "torch" (torch.mm on ``device``); dtype: "float32"/"float64".
    """
    gemms = training_gemms(sizes, batch)
    if library == "numpy":
        return _numpy_floor(gemms, dtype)
    return _torch_floor(gemms, dtype, device)


def _numpy_floor(gemms: list[Gemm], dtype: str) -> Callable[[], None]:
    ops = []
    for g in gemms:
        if "x^T" in g.what:  # x (B, in) viewed as x^T
            a = np.ones((g.k, g.m), dtype).T
            b = np.ones((g.k, g.n), dtype)
        elif "W^T" in g.what:  # W (in, out) viewed as W^T
            a = np.ones((g.m, g.k), dtype)
            b = np.ones((g.n, g.k), dtype).T
        else:
            a, b = np.ones((g.m, g.k), dtype), np.ones((g.k, g.n), dtype)
        ops.append((a, b, np.empty((g.m, g.n), dtype)))
    matmul = np.matmul

    def run() -> None:
        for a, b, out in ops:
            matmul(a, b, out=out)

    return run


def _torch_floor(gemms: list[Gemm], dtype: str, device: str) -> Callable[[], None]:
    import torch

    kind = getattr(torch, dtype)
    ops = []
    for g in gemms:
        if "x^T" in g.what:
            a = torch.ones((g.k, g.m), dtype=kind, device=device).t()
            b = torch.ones((g.k, g.n), dtype=kind, device=device)
        elif "W^T" in g.what:
            a = torch.ones((g.m, g.k), dtype=kind, device=device)
            b = torch.ones((g.n, g.k), dtype=kind, device=device).t()
        else:
            a = torch.ones((g.m, g.k), dtype=kind, device=device)
            b = torch.ones((g.k, g.n), dtype=kind, device=device)
        ops.append((a, b, torch.empty((g.m, g.n), dtype=kind, device=device)))
    mm = torch.mm

    def run() -> None:
        for a, b, out in ops:
            mm(a, b, out=out)

    return run
