"""Where a run stands, and the metrics each finished epoch records (metrics.csv's columns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The keys every row of a run's history has (rows may also name the "engine" that trained the
# epoch); metrics.csv has these columns and the engine.
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "samples_per_s"]
CSV_COLUMNS = [*METRIC_COLUMNS, "engine"]


@dataclass
class Progress:
    """Where a run stands; what a checkpoint needs beyond parameters and optimizer state."""

    epoch: int = 0  # the epoch in progress (0-based) = epochs finished
    step: int = 0  # batches of it already done
    global_step: int = 0  # optimizer steps since the run began
    loss_sum: float = 0.0  # sum of the loss over the epoch's samples so far
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # training time spent in this epoch so far
    last_loss: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics row per finished epoch
