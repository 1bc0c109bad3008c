"""Learning-rate schedules, stepped once per epoch, replaying torch.optim.lr_scheduler's own
recurrences (not their closed forms) so the rates agree with torch to the last bit."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine")


def epoch_learning_rates(schedule: str, base_lr: float, epochs: int, step_size: int = 5,
                         gamma: float = 0.1) -> list[float]:
    """The learning rate used in each epoch 0..epochs-1.

    step:   StepLR(step_size, gamma): lr *= gamma whenever epoch % step_size == 0 (epoch > 0).
    cosine: CosineAnnealingLR(T_max=epochs, eta_min=0), its recursive form:
            lr_e = (1 + cos(pi e / T)) / (1 + cos(pi (e - 1) / T)) * lr_{e-1}.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"lr schedule: expected one of {', '.join(SCHEDULES)}, got {schedule!r}")
    rates = [float(base_lr)]
    for epoch in range(1, epochs):
        lr = rates[-1]
        if schedule == "step":
            if epoch % step_size == 0:
                lr = lr * gamma
        elif schedule == "cosine":
            t_max, eta_min = epochs, 0.0
            if (epoch - 1 - t_max) % (2 * t_max) == 0:
                lr = lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
            else:
                lr = (
                    (1 + math.cos(math.pi * epoch / t_max))
                    / (1 + math.cos(math.pi * (epoch - 1) / t_max))
                    * (lr - eta_min)
                    + eta_min
                )
        rates.append(lr)
    return rates[:epochs]
