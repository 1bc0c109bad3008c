"""The project's own tests, one folder per package and one file per module they test:
tests/<package>/test_<module>.py tests <package>/<module>.py (backprop/, backprop/cli/ a file per
command, backprop/datasets/, engine_core/, numpy_net/, torch_net/), and tests/parity_tests/ tests
the harness itself (its shipped properties are parity_tests/test_*.py).

A test that runs the same assertions in every engine lives with the contract it checks: the
refusals and messages engine_core states once in tests/engine_core/, the numbers of twin modules
(numpy_net/conv.py and torch_net/conv.py, ...) in tests/numpy_net/test_<module>.py.

Shared: conftest.py (fixtures: data_root, trained, no_pictures), helpers.py (running the CLI in
this process, checkpoints, messages), datasets.py (data files), networks.py and layer_stacks.py
(the small networks and layers the tests build); legacy/ holds old checkpoints.

`make test` deselects the tests marked slow (`make thorough` runs them): each one's reason names
the fast test that covers the same property at a smaller size."""
