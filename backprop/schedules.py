"""Learning-rate schedules, stepped once per epoch, replaying torch.optim.lr_scheduler's own
recurrences (not their closed forms) so the rates agree with torch to the last bit."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine")


def epoch_learning_rates(schedule: str, base_lr: float, epochs: int, step_size: int = 5,
                         gamma: float = 0.1, t_max: int | None = None) -> list[float]:
    """The learning rate used in each epoch 0..epochs-1 (a list of ``epochs`` floats).

    step:   StepLR(step_size, gamma): lr *= gamma whenever epoch % step_size == 0 (epoch > 0).
    cosine: CosineAnnealingLR(T_max=t_max, eta_min=0) in its recursive form
            lr_e = (1 + cos(pi e / T)) / (1 + cos(pi (e - 1) / T)) * lr_{e-1}, and at
            e = T + 1 (mod 2T) lr_e = lr_{e-1} + base_lr (1 - cos(pi / T)) / 2, as torch steps it
            (https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CosineAnnealingLR.html).
            ``t_max`` (epochs, default ``epochs``) is the period the schedule was created with: a
            run resumed with more epochs keeps its original T_max, so past it the rate rises
            again exactly as torch's scheduler, stepped on, would.

    Raises ValueError for an unknown schedule or a t_max below 1.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"lr schedule: expected one of {', '.join(SCHEDULES)}, got {schedule!r}")
    period = epochs if t_max is None else t_max
    if period < 1:
        raise ValueError(f"lr schedule: t_max must be a positive number of epochs, got {period}")
    rates = [float(base_lr)]
    for epoch in range(1, epochs):
        lr = rates[-1]
        if schedule == "step":
            if epoch % step_size == 0:
                lr = lr * gamma
        elif schedule == "cosine":
            eta_min = 0.0
            if (epoch - 1 - period) % (2 * period) == 0:
                lr = lr + (base_lr - eta_min) * (1 - math.cos(math.pi / period)) / 2
            else:
                lr = (
                    (1 + math.cos(math.pi * epoch / period))
                    / (1 + math.cos(math.pi * (epoch - 1) / period))
                    * (lr - eta_min)
                    + eta_min
                )
        rates.append(lr)
    return rates[:epochs]
