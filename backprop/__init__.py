"""backprop: the application around the engines.

- ``backprop.cli``: the command line (argument types, option groups, exit codes, the commands it
  prints as hints; one module per command), the only layer that knows argparse;
- library modules below it: ``training`` (Trainer, make_step, evaluate), ``checkpoint``,
  ``config`` (TrainConfig, presets, choice lists), ``engines`` (loading and the adapter),
  ``schedules``, ``export``, ``benchmark`` and ``floor`` (bench's measurement), ``lockstep``
  (compare's), ``plots``, ``fileio`` (atomic writes), ``rundir`` (run directories claimed
  exclusively) and ``datasets`` (reading ./data).
"""
