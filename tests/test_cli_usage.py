"""Case 6: usage errors are usage errors, in every command: argparse's message naming the flag,
exit 2, before any data is read; near misses get a suggestion; `backprop` alone prints the help;
--version exists."""

from __future__ import annotations

import pytest

from backprop.cli import main

from .helpers import run_cli


@pytest.mark.parametrize("args, words", [
    # the field cases: a negative seed in train and in compare (it was a NumPy traceback there)
    (["train", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
    (["compare", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
    (["compare", "--seed", "1.5"], "argument --seed: expected an integer >= 0, got '1.5'"),
    (["compare", "--steps", "0"], "argument --steps: expected a positive integer"),
    (["compare", "--tol", "-1"], "argument --tol: expected a finite number >= 0"),
    (["compare", "--lr", "nan"], "argument --lr: expected a finite number >= 0"),
    (["compare", "--engines", "numpy"], "--engines: give two or three different engines"),
    (["compare", "--limit", "8", "--batch-size", "16"], "--batch-size 16 is larger than --limit 8"),
    (["compare", "--optimizer", "adam", "--momentum", "0.9"], "--momentum applies to --optimizer sgd only"),
    (["bench", "--seed", "1"], "unrecognized arguments: --seed 1"),
    (["bench", "--batch-sizes", "32,0"], "argument --batch-sizes: expected a positive integer"),
    (["bench", "--repeats", "0"], "argument --repeats: expected a positive integer"),
    (["bench", "--epochs", "-0.5"], "argument --epochs: expected a finite number >= 0"),
    (["bench", "--workloads", "huge"], "--workloads: unknown workload 'huge'"),
    (["bench", "--engines", "numpy,numpy"], "--engines: give one or more different engines"),
    (["evaluate", "c.npz", "--engine", "jax"], "argument --engine: unknown engine 'jax'"),
    (["evaluate", "c.npz", "--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["evaluate", "c.npz", "--device", "tpu"], "runs on cpu (its DEVICES), not tpu"),
    (["evaluate"], "the following arguments are required: CHECKPOINT"),
    (["export", "c.npz"], "the following arguments are required: --to"),
    (["train", "--epochs", "two"], "argument --epochs: expected a positive integer, got 'two'"),
    (["train", "--lr", "inf"], "argument --lr: expected a finite number >= 0"),
    (["train", "--hidden", "64,,x"], "argument --hidden: expected comma-separated positive widths"),
])
def test_bad_values_are_usage_errors_naming_the_flag_in_every_command(args, words, tmp_path):
    # The data directory does not exist: had it been read, the exit would be 1 with a data message.
    where = [] if args[0] == "export" else ["--data-dir", str(tmp_path / "nowhere")]
    result = run_cli(*args, *where)
    assert result.returncode == 2, (args, result.stderr)
    assert words in result.stderr, (args, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith(f"usage: backprop {args[0]}"), result.stderr


@pytest.mark.parametrize("args, suggestion", [
    (["train", "--optimiser", "adam"], "unrecognized arguments: --optimiser adam; did you mean --optimizer?"),
    (["train", "--lr-shedule=cosine"], "did you mean --lr-schedule?"),
    (["compare", "--engnes", "numpy,torch"], "did you mean --engines?"),
    (["bench", "--batchsizes", "32"], "did you mean --batch-sizes?"),
    (["evaluate", "c.npz", "--data-dri", "x"], "did you mean --data-dir?"),
    (["export", "c.npz", "--too", "m.pt"], "did you mean --to?"),
    (["train", "--optimizer", "adm"], "invalid choice: 'adm' (choose from 'sgd', 'adam', 'adamw'); did you mean "
                                      "'adam'?"),
    (["train", "--dataset", "fashion_mnist"], "did you mean 'fashion-mnist'?"),
    (["train", "--engine", "nmupy"], "unknown engine 'nmupy'"),
    (["train", "--engine", "nmupy"], "did you mean 'numpy'?"),
    (["bench", "--workloads", "notebok"], "did you mean 'notebook'?"),
    (["trian"], "invalid choice: 'trian'"),
    (["trian"], "did you mean 'train'?"),
])
def test_a_near_miss_suggests_the_close_flag_choice_or_command(args, suggestion, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert suggestion in capsys.readouterr().err


def test_an_unknown_flag_is_reported_by_the_command_it_was_given_to(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "c.npz", "--seed", "3"])
    err = capsys.readouterr().err
    assert err.startswith("usage: backprop evaluate") and "unrecognized arguments: --seed 3" in err


def test_backprop_alone_prints_the_help_and_version_exists():
    alone = run_cli()
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.startswith("usage: backprop") and "train" in alone.stdout and "evaluate" in alone.stdout
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("backprop ") and "torch" in version.stdout
