"""Learning-rate schedules: the same rate as torch.optim.lr_scheduler at every epoch, to the bit."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from backprop.config import TrainConfig
from backprop.engines import load_engine
from backprop.schedules import epoch_learning_rates
from backprop.trainer import Trainer
from data import load_dataset


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


def test_constant_schedule_is_constant():
    assert epoch_learning_rates("constant", 0.1, 4) == [0.1] * 4


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="lr schedule"):
        epoch_learning_rates("linear", 0.1, 3)


def test_the_trainer_uses_each_epochs_rate(data_root, tmp_path):
    config = TrainConfig(dataset="fashion-mnist", hidden=[4], epochs=3, batch_size=64, lr=0.1,
                         lr_schedule="step", step_size=1, gamma=0.5)
    seen = []
    trainer = Trainer(config, load_engine("numpy"), load_dataset("fashion-mnist", data_root), str(tmp_path),
                      quiet=True, log=lambda *_: seen.append(trainer.optimizer.lr))
    trainer.run()
    assert seen == [0.1, 0.05, 0.025]
