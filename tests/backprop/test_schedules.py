"""Learning-rate schedules (backprop/schedules.py): the same rate as torch.optim.lr_scheduler at every
epoch, to the bit."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from backprop.schedules import epoch_learning_rates


def _torch_rates(make_scheduler, base_lr: float, epochs: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = make_scheduler(optimizer)
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": no training here
        for _ in range(epochs):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    return rates


@given(st.floats(1e-5, 1.0), st.integers(1, 60), st.integers(1, 10), st.floats(0.01, 0.99))
def test_step_schedule_matches_torch_steplr_exactly(base_lr, epochs, step_size, gamma):
    expected = _torch_rates(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size, gamma), base_lr, epochs)
    assert epoch_learning_rates("step", base_lr, epochs, step_size, gamma) == expected


@given(st.floats(1e-5, 1.0), st.integers(1, 200))
def test_cosine_schedule_matches_torch_cosineannealinglr_exactly(base_lr, epochs):
    expected = _torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=epochs), base_lr, epochs)
    assert epoch_learning_rates("cosine", base_lr, epochs) == expected


@given(st.floats(1e-5, 1.0), st.integers(1, 40), st.integers(0, 100))
def test_cosine_past_its_period_continues_torchs_recurrence_exactly(base_lr, t_max, extra):
    """A run created for t_max epochs and resumed to train longer keeps T_max: at every epoch,
    beyond T_max too, the rate is what torch's CosineAnnealingLR(T_max=t_max), stepped on, gives."""
    epochs = t_max + extra
    expected = _torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=t_max), base_lr, epochs)
    assert epoch_learning_rates("cosine", base_lr, epochs, t_max=t_max) == expected


def test_a_fifteen_epoch_cosine_run_resumed_to_twenty_keeps_its_period():
    """Field case 8: a 15-epoch cosine run (lr 0.05) resumed with --epochs 20 reaches eta_min = 0
    in epoch 16 and rises as torch's scheduler does (epoch 17: 0.05 (1 - cos(pi/15)) / 2, about
    0.00055), instead of the 0.0073 of a schedule silently re-planned for 20 epochs."""
    rates = epoch_learning_rates("cosine", 0.05, 20, t_max=15)
    assert rates[:15] == epoch_learning_rates("cosine", 0.05, 15)
    assert rates[15] == 0.0
    assert rates[16] == pytest.approx(0.05 * (1 - math.cos(math.pi / 15)) / 2, rel=1e-12)
    assert epoch_learning_rates("cosine", 0.05, 20)[15] == pytest.approx(0.00732, abs=1e-5)  # the old bug


def test_step_schedule_ignores_t_max():
    assert epoch_learning_rates("step", 0.1, 12, 5, 0.5, t_max=3) == epoch_learning_rates("step", 0.1, 12, 5, 0.5)


def test_constant_schedule_is_constant():
    assert epoch_learning_rates("constant", 0.1, 4) == [0.1] * 4


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="lr schedule"):
        epoch_learning_rates("linear", 0.1, 3)
    with pytest.raises(ValueError, match="t_max"):
        epoch_learning_rates("cosine", 0.1, 3, t_max=0)
