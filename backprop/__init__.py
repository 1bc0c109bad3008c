"""backprop: the application around the engines.

- ``backprop.cli``: the command line (argument types, option groups, exit codes; one module per
  command), the only layer that knows argparse;
- library modules below it: ``training`` (Trainer, make_step, evaluate), ``checkpoint``,
  ``config`` (TrainConfig, presets, choice lists), ``engines`` (loading and the adapter),
  ``schedules``, ``export``, ``benchmark`` and ``floor`` (bench's measurement), ``lockstep``
  (compare's), ``plots``, ``fileio`` (atomic writes) and ``datasets`` (reading ./data).
"""
