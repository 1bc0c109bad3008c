"""examples/: the walkthrough notebook uses the public API only (the engines' ``__all__`` and the
functions docs/library.md lists), and walkthrough_data.find_data says which data it runs on. The
notebook itself runs top to bottom in `make test` (nbmake)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import sys
import tempfile

import pytest

from backprop.datasets import write_synthetic_dataset
from tests.helpers import ROOT

NOTEBOOK = os.path.join(ROOT, "examples", "walkthrough.ipynb")
PROJECT = ("backprop", "engine_core", "numpy_net", "torch_net", "parity_tests")
# Modules with the engine interface: their public names are numpy_net's __all__.
ENGINES = ("numpy_net", "torch_net", "torch_net.autograd", "parity_tests.fixtures.notebook_engine")


def _code() -> ast.Module:
    """The notebook's code cells and the helper module it imports (examples/walkthrough_data.py)."""
    with open(NOTEBOOK, encoding="utf-8") as f:
        cells = json.load(f)["cells"]
    lines = [line for cell in cells if cell["cell_type"] == "code" for line in "".join(cell["source"]).splitlines()]
    with open(os.path.join(ROOT, "examples", "walkthrough_data.py"), encoding="utf-8") as f:
        lines += f.read().splitlines()
    # IPython's magics and shell escapes (%time, !pip) are no Python: they name no project module.
    return ast.parse("\n".join(line for line in lines if not line.lstrip().startswith(("%", "!"))))


def _documented() -> set[str]:
    """Every dotted name in backprop.x.y / engine_core.x.y form that docs/library.md writes in backticks."""
    with open(os.path.join(ROOT, "docs", "library.md"), encoding="utf-8") as f:
        text = f.read()
    table = text[text.index("## The application's functions"):]
    table = table[: table.find("\n## ", 1) if "\n## " in table[1:] else len(table)]  # that section only
    names = set()
    for cell in table.split("`")[1::2]:
        head = cell.split("(")[0]
        if head.startswith(("backprop.", "engine_core.")):
            names.add(head)
    # "engine_core.specs.LayerSpec, build(...), sequential(...)": the names listed after a module's first one
    for row in table.splitlines():
        first = row.split("`")[1].split("(")[0] if row.startswith("| `engine_core.") else None
        if first:  # the row's first column only: the names it lists
            row = row.split(" | ")[0]
            module = first.rpartition(".")[0]
            names.update(f"{module}.{c.split('(')[0]}" for c in row.split("`")[1::2] if c[:1].isalpha()
                         and "." not in c.split("(")[0])
    return {name for name in names if not _is_module(name)}  # a module named in passing is not all of it


def _is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:  # a parent that is no package
        return False


def _public_uses(tree: ast.Module) -> list[tuple[str, str]]:
    """(module, name) for every project name the notebook imports or reads off an imported module
    (``import numpy_net as E`` then ``E.MLP``; E may name several modules in turn)."""
    uses, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PROJECT):
            uses += [(node.module, alias.name) for alias in node.names]
            for alias in node.names:  # `from torch_net import autograd`, `from engine_core import specs`: modules
                if _is_module(f"{node.module}.{alias.name}"):
                    aliases.setdefault(alias.asname or alias.name, set()).add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PROJECT):
                    aliases.setdefault(alias.asname or alias.name, set()).add(alias.name)
    for node in ast.walk(tree):  # E.MLP, and backprop.training.make_step after `import backprop.training`
        if isinstance(node, ast.Attribute) and (base := _dotted(node.value)) in aliases:
            uses += [(module, node.attr) for module in aliases[base]]
    return sorted(set(uses))


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)) is not None:
        return f"{base}.{node.attr}"
    return None


def test_the_check_sees_every_way_of_reaching_a_name():
    tree = ast.parse("import backprop.training\nimport backprop.training as t\nfrom parity_tests import compare\n"
                     "from engine_core import specs\nimport numpy_net as E\nbackprop.training.make_step\n"
                     "t.evaluate\nE.MLP\ncompare.run_pass\nspecs.initial_state\n")
    assert {("backprop.training", "make_step"), ("backprop.training", "evaluate"), ("numpy_net", "MLP"),
            ("parity_tests.compare", "run_pass"), ("engine_core.specs", "initial_state")} <= set(_public_uses(tree))
    assert "engine_core.specs" not in _documented()  # named in the table, but only its listed functions are public


def test_the_notebook_uses_only_the_engines_interface_and_the_documented_functions():
    import numpy_net

    documented = _documented()
    assert "backprop.cli.main" in documented and "engine_core.specs.build" in documented  # the parse works
    for dotted in documented:  # each documented name exists
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), f"docs/library.md lists {dotted}, which is not there"
    uses = _public_uses(_code())
    assert {("numpy_net", "Linear"), ("torch_net", "SGD"), ("backprop.cli", "main"),
            ("backprop.datasets", "write_synthetic_dataset")} <= set(uses)  # and this one, over both files
    private = []
    for module, name in uses:
        if name.startswith("__") and name.endswith("__"):
            continue  # Python's own module attributes (__file__)
        if f"{module}.{name}" in ENGINES or _is_module(f"{module}.{name}"):
            continue  # `from torch_net import autograd`: the module itself; what is read off it is checked
        if module in ENGINES:
            if name not in numpy_net.__all__:
                private.append(f"{module}.{name}")
        elif f"{module}.{name}" not in documented:
            private.append(f"{module}.{name}")
    assert not private, f"the notebook uses names that are neither an engine's nor in docs/library.md: {private}"


@pytest.fixture
def find_data(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its work folders, which the notebook keeps
    monkeypatch.delenv("BACKPROP_DATASET", raising=False)
    monkeypatch.delenv("BACKPROP_DATA_DIR", raising=False)
    sys.modules.pop("walkthrough_data", None)
    module = importlib.import_module("walkthrough_data")
    yield module
    sys.modules.pop("walkthrough_data", None)


def test_the_notebook_finds_the_readmes_data_folder_beside_the_repository(find_data, tmp_path, monkeypatch, capsys):
    repository = tmp_path / "clone"
    repository.mkdir()
    monkeypatch.setattr(find_data, "repository_root", lambda: str(repository))
    shared = tmp_path / "shared" / "datasets"
    write_synthetic_dataset(str(shared), "fashion-mnist", n_train=20, n_test=10)
    dataset, data_dir, synthetic, work = find_data.find_data()
    assert (dataset, data_dir, synthetic) == ("fashion-mnist", str(shared), False)
    assert os.path.isdir(work) and not os.listdir(work)
    out = capsys.readouterr().out
    assert "real data: fashion-mnist" in out and "SYNTHETIC" not in out


def test_without_data_the_notebook_writes_synthetic_data_and_says_nothing_is_a_result(find_data, tmp_path,
                                                                                     monkeypatch, capsys):
    monkeypatch.setattr(find_data, "repository_root", lambda: str(tmp_path / "clone"))
    dataset, data_dir, synthetic, work = find_data.find_data()
    assert synthetic and data_dir == os.path.join(work, "data")
    assert find_data.has_raw_files(data_dir, dataset)
    out = capsys.readouterr().out
    assert out.startswith("SYNTHETIC DATA (no fashion-mnist in the README's data folder")
    assert "none of them is a result" in out


def test_backprop_dataset_synthetic_forces_the_synthetic_data_even_beside_real_data(find_data, monkeypatch, capsys):
    monkeypatch.setenv("BACKPROP_DATASET", "synthetic")
    _, _, synthetic, _ = find_data.find_data()
    assert synthetic and "BACKPROP_DATASET=synthetic" in capsys.readouterr().out


def test_a_misspelt_dataset_is_named_with_the_choices(find_data, monkeypatch):
    monkeypatch.setenv("BACKPROP_DATASET", "fashion_mnist")
    with pytest.raises(SystemExit, match=r"BACKPROP_DATASET=.fashion_mnist.: expected one of mnist, fashion-mnist, "):
        find_data.find_data()


def test_without_mnist_the_message_names_mnists_folder(find_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(find_data, "repository_root", lambda: str(tmp_path / "clone"))
    monkeypatch.setenv("BACKPROP_DATASET", "mnist")
    find_data.find_data()
    out = capsys.readouterr().out
    assert "MNIST/raw/" in out and "FashionMNIST" not in out
