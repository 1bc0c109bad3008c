"""The application's own tests (CLI, data, checkpoints, training, bench/compare) and the engines'
contract tests. The parity harness that checks any engine lives in parity_tests/."""
