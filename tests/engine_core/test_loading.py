"""engine_core.loading: how the CLI and the harness find an engine by name, with the faults a
new user found kept fixed (the third's tests are with the plugin's, tests/parity_tests):

1. An engine module in the current directory (./my_engine.py) was found neither by the installed
   `backprop` script nor by `pytest --pyargs parity_tests` (neither puts the current directory on
   sys.path); a module found nowhere now says where it was looked for and what to do.
2. The harness's --engine numpy imported the NumPy library as an engine: it now takes the CLI's
   names (numpy, torch, autograd) from the one table both use (engine_core.loading.ENGINES).
3. One failing property printed a long traceback through the comparison helpers, and hypothesis's
   advice to decorate the failing test, which an outside author cannot follow (the tests are the
   harness's): a failure is now short, says how to run it again, and never dumps arrays.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import backprop.engines
import parity_tests.engines
from backprop.cli import main
from engine_core import loading
from engine_core.loading import ENGINES, EngineNameError, EngineNotFoundError, import_engine
from parity_tests import plugin

SCRIPTS = Path(sys.executable).parent
ENGINE_SOURCE = "from numpy_net import *  # noqa: F403\n"


@pytest.fixture
def bare_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tmp_path as the current directory, with no entry of sys.path standing for it (as under the
    installed `backprop` and `pytest` scripts); the modules a test imports from it are forgotten after."""
    monkeypatch.chdir(tmp_path)
    here = os.path.realpath(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.realpath(p or os.curdir) != here])
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        module = sys.modules[name]
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)) or name.startswith("pending_"):
            del sys.modules[name]
    importlib.invalidate_caches()


# -- 1. a module in the current directory --------------------------------------------------------
def test_a_module_in_the_current_directory_is_found_by_the_cli_and_the_harness_alike(bare_cwd: Path):
    (bare_cwd / "pending_cwd_engine.py").write_text(ENGINE_SOURCE)
    engine = backprop.engines.load_engine("pending_cwd_engine")
    assert Path(str(engine.module.__file__)).parent == bare_cwd
    assert sys.path[-1] == str(bare_cwd)  # appended: it never hides an installed module
    assert parity_tests.engines.load_engine("pending_cwd_engine").module is engine.module


def test_a_package_in_the_current_directory_is_found_by_its_module_path(bare_cwd: Path):
    (bare_cwd / "pending_pkg").mkdir()
    (bare_cwd / "pending_pkg" / "__init__.py").write_text("")
    (bare_cwd / "pending_pkg" / "my_engine.py").write_text(ENGINE_SOURCE)
    module = import_engine("pending_pkg.my_engine")
    assert module.__name__ == "pending_pkg.my_engine" and Path(str(module.__file__)).parent == bare_cwd / "pending_pkg"


def test_a_file_in_the_current_directory_never_hides_an_installed_module(bare_cwd: Path):
    import numpy_net

    (bare_cwd / "numpy_net.py").write_text("raise RuntimeError('the cwd copy was imported')\n")
    assert import_engine("numpy") is numpy_net and import_engine("numpy_net") is numpy_net
    assert str(bare_cwd) not in sys.path


def test_a_module_found_nowhere_says_where_it_looked_and_what_to_do(bare_cwd: Path, capsys):
    with pytest.raises(EngineNotFoundError) as info:
        import_engine("pending_nowhere_engine")
    message = str(info.value)
    assert "No module named 'pending_nowhere_engine'" in message
    assert "Looked on sys.path (" in message and "site-packages" in message
    assert f"in the current directory {bare_cwd}" in message and "no pending_nowhere_engine.py" in message
    assert "Run from the folder that holds pending_nowhere_engine.py" in message and "PYTHONPATH=" in message
    assert str(bare_cwd) not in sys.path  # nothing is left on sys.path by a failed look

    # The same words from the CLI (a usage error naming the flag) and from the harness (exit 4).
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--engine", "pending_nowhere_engine", "--data-dir", str(bare_cwd / "nowhere")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --engine: unknown engine 'pending_nowhere_engine': {message}" in err, err
    with pytest.raises(pytest.UsageError, match=r"--engine pending_nowhere_engine: No module named .*Looked on "
                                                r"sys.path .* current directory"):
        plugin.pytest_configure(SimpleNamespace(getoption=lambda name: ["pending_nowhere_engine"]))  # type: ignore[arg-type]


def test_a_missing_module_inside_a_found_package_is_named_with_the_package(bare_cwd: Path):
    with pytest.raises(EngineNotFoundError, match=r"No module named 'numpy_net.nope': the package numpy_net \(.*\) "
                                                  r"has no module nope"):
        import_engine("numpy_net.nope")


def test_an_engine_whose_own_import_is_missing_is_not_reported_as_not_found(bare_cwd: Path):
    (bare_cwd / "pending_needs_dep.py").write_text("import pending_no_such_dependency\n")
    with pytest.raises(ModuleNotFoundError) as info:
        import_engine("pending_needs_dep")
    assert not isinstance(info.value, EngineNotFoundError) and info.value.name == "pending_no_such_dependency"
    with pytest.raises(backprop.engines.EngineError,
                       match=r"importing pending_needs_dep failed \(ModuleNotFoundError: No module named "
                             r"'pending_no_such_dependency'\)"):
        backprop.engines.load_engine("pending_needs_dep")


def test_a_file_name_given_for_an_engine_is_told_to_give_the_module_name(bare_cwd: Path):
    with pytest.raises(EngineNameError, match=r"give its module name, my_engine"):
        import_engine("./my_engine.py")
    # A bare file name is a module path too ("py" in a package pending_marked): refused before the
    # file runs.
    (bare_cwd / "pending_marked.py").write_text("open('ran', 'w').close()\n")
    with pytest.raises(EngineNameError, match=r"give its module name, pending_marked"):
        import_engine("pending_marked.py")
    assert not (bare_cwd / "ran").exists()
    with pytest.raises(backprop.engines.EngineError, match=r"^unknown engine 'no/such': expected numpy, torch"):
        backprop.engines.load_engine("no/such")


@pytest.mark.skipif(not (SCRIPTS / "pytest").exists() or not (SCRIPTS / "backprop").exists(),
                    reason="needs the venv's installed pytest and backprop scripts")
def test_the_installed_scripts_find_a_module_in_the_current_directory(tmp_path: Path):
    """The scripts themselves (not python -m, which puts the current directory on sys.path)."""
    (tmp_path / "pending_script_engine.py").write_text(ENGINE_SOURCE)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    collected = subprocess.run(
        [str(SCRIPTS / "pytest"), "-q", "-p", "no:cacheprovider", "--collect-only", "--pyargs",
         "parity_tests.test_gradients", "--engine", "pending_script_engine"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    assert "[pending_script_engine]" in collected.stdout
    # backprop gets past the engine (a usage error, exit 2, would name --engine) to the missing checkpoint.
    evaluated = subprocess.run(
        [str(SCRIPTS / "backprop"), "evaluate", "missing.npz", "--engine", "pending_script_engine", "--data-dir",
         str(tmp_path / "nowhere")], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert evaluated.returncode == 1 and "no such checkpoint file" in evaluated.stderr, evaluated.stderr[-2000:]
    assert "--engine" not in evaluated.stderr, evaluated.stderr[-2000:]


# -- 2. the CLI's engine names in the harness ---------------------------------------------------
def test_the_harness_and_the_cli_share_one_table_of_engine_names():
    assert backprop.engines.ENGINES is loading.ENGINES
    assert parity_tests.engines.ORACLE == ENGINES["autograd"]
    assert ENGINES == {"numpy": "numpy_net", "torch": "torch_net", "autograd": "torch_net.autograd"}


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_the_harness_takes_each_cli_engine_name_with_the_clis_meaning(name: str):
    module = importlib.import_module(ENGINES[name])
    assert parity_tests.engines.load_engine(name).module is module
    assert backprop.engines.load_engine(name).module is module


def test_the_harness_accepts_the_cli_names_and_module_paths_on_the_command_line():
    names = [*ENGINES, "numpy_net", "parity_tests.fixtures.notebook_engine"]
    plugin.pytest_configure(SimpleNamespace(getoption=lambda option: names))  # type: ignore[arg-type]
    assert parity_tests.engines.load_engine("numpy").module.__name__ == "numpy_net"  # not NumPy itself


def test_a_copy_of_an_engine_is_named_by_its_module_not_by_the_name_it_re_exports(bare_cwd: Path):
    """`from numpy_net import *` brings numpy_net's NAME along: the copy (a broken layer, say) must
    not train, print and record checkpoints as "numpy"; a NAME of its own is kept."""
    from engine_core.protocol import traits

    (bare_cwd / "pending_copy.py").write_text("from numpy_net import *  # noqa: F403\n")
    (bare_cwd / "pending_named.py").write_text("from numpy_net import *  # noqa: F403\nNAME = 'mine'\n")
    assert traits(import_engine("pending_copy")).name == "pending_copy"
    assert traits(import_engine("pending_named")).name == "mine"
    assert [traits(import_engine(name)).name for name in ENGINES] == list(ENGINES)
