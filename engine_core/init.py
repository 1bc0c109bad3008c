"""Initial parameters, drawn once in NumPy so that every engine starts from the same bits.

Every engine (and the oracle) loads what :func:`initial_parameters` returns; weights are laid
out (in, out) (z = x @ W + b), so fan_in = in and fan_out = out.
"""

from __future__ import annotations

import math

import numpy as np

from .checks import check_choice, check_seed, check_sizes
from .naming import INITS, linear_name


def _draw_layer(
    rng: np.random.Generator, init: str, fan_in: int, fan_out: int
) -> tuple[np.ndarray, np.ndarray]:
    """One layer's (weight (fan_in, fan_out), bias (fan_out,)) in float64."""
    shape = (fan_in, fan_out)
    bias = np.zeros(fan_out)
    if init == "xavier_normal":  # std = sqrt(2 / (fan_in + fan_out)), Glorot & Bengio 2010
        weight = rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    elif init == "xavier_uniform":  # U(-a, a), a = sqrt(6 / (fan_in + fan_out))
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        weight = rng.uniform(-bound, bound, shape)
    elif init == "he_normal":  # std = sqrt(2 / fan_in), He et al. 2015
        weight = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    elif init == "torch_default":
        # nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) gives bound 1/sqrt(fan_in)
        # for the weight, and the bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1.0 / math.sqrt(fan_in)
        weight = rng.uniform(-bound, bound, shape)
        bias = rng.uniform(-bound, bound, fan_out)
    else:
        check_choice("init", init, INITS)
        raise AssertionError("unreachable")
    return weight, bias


def initial_parameters(sizes: list[int], init: str, seed: int) -> dict[str, np.ndarray]:
    """{"fc{i}.weight": (sizes[i], sizes[i+1]), "fc{i}.bias": (sizes[i+1],)} in float64, from one
    ``np.random.default_rng(seed)``, layer after layer. Raises ValueError for an unknown init,
    TypeError/ValueError for a seed that is not an int >= 0.

    Formulas: xavier_normal N(0, 2/(fan_in+fan_out)); xavier_uniform U(+-sqrt(6/(fan_in+fan_out)));
    he_normal N(0, 2/fan_in); torch_default is nn.Linear.reset_parameters (torch.nn.Linear
    documentation): weight and bias U(+-1/sqrt(fan_in)).
    """
    sizes = check_sizes(sizes)
    check_choice("init", init, INITS)
    rng = np.random.default_rng(check_seed(seed))
    params: dict[str, np.ndarray] = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        name = linear_name(i)
        params[f"{name}.weight"], params[f"{name}.bias"] = _draw_layer(rng, init, fan_in, fan_out)
    return params
