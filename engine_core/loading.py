"""Finding an engine module by the name a user gives it: the one rule behind `backprop ... --engine`
and the harness's `pytest --pyargs parity_tests --engine` (both call import_engine).

- numpy, torch, autograd (ENGINES) are this repository's engines: numpy_net, torch_net and
  torch_net.autograd. Anything else is a module path (``my_engine``, ``mypkg.my_engine``).
- A module path is imported as Python imports it (sys.path: the installed packages, PYTHONPATH, ...).
  Only when that finds no module of that top-level name, and the current directory holds one
  (``my_engine.py``, a package ``my_engine/``, or a compiled ``my_engine.*.so``), is the current
  directory appended to sys.path and the import tried again: the installed ``backprop`` and
  ``pytest`` scripts do not put the current directory on sys.path (``python -m`` does), and an
  engine written next to its data should work from there. Appended, not prepended, and only on
  failure: a file in the current directory never shadows an installed module.
- A module found nowhere is EngineNotFoundError, whose message says where it was looked for and
  what to do; a module that fails while importing raises its own error, for the caller to report.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import re
import sys
import sysconfig
from types import ModuleType

# The short names of this repository's engines, for the command line and the harness alike.
ENGINES = {"numpy": "numpy_net", "torch": "torch_net", "autograd": "torch_net.autograd"}
MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class EngineNameError(ValueError):
    """The engine's name is neither one of ENGINES nor a module path (``no/such``, ``my_engine.py``)."""


class EngineNotFoundError(ModuleNotFoundError):
    """No module of the engine's name on sys.path nor in the current directory; the message says
    where it looked and how to make the module importable."""


def module_name(spec: str) -> str:
    """The module an engine name stands for: ENGINES's, or the name itself (a module path)."""
    return ENGINES.get(spec, spec)


def import_engine(spec: str) -> ModuleType:
    """The module ``spec`` names (a key of ENGINES or a module path), imported.

    Raises EngineNameError when ``spec`` is no module path, EngineNotFoundError when no such
    module exists on sys.path or in the current directory, and whatever the module itself raises
    while it is imported (a ModuleNotFoundError for one of its own imports included).
    """
    name = module_name(spec)
    # "my_engine.py" is a module path too (module py in package my_engine), but one that nobody
    # means: importing it would run my_engine.py before failing on its missing "py".
    if not MODULE_PATH.fullmatch(name) or name.endswith(".py"):
        raise EngineNameError(_bad_name_message(spec))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if not _is_the_engine_itself(error, name):
            raise  # the engine was found; something it imports was not
        missing = error
    top = name.split(".")[0]
    cwd = os.getcwd()
    if missing.name == top and _in_directory(cwd, top, dotted="." in name) and not _on_sys_path(cwd):
        sys.path.append(cwd)
        importlib.invalidate_caches()
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as error:
            if not _is_the_engine_itself(error, name):
                raise
            sys.path.remove(cwd)
            missing = error
    raise EngineNotFoundError(_not_found_message(spec, name, missing.name or name, cwd), name=missing.name) from None


def _is_the_engine_itself(error: ModuleNotFoundError, name: str) -> bool:
    """Whether the missing module is ``name`` or a package on its path (not one it imports)."""
    return bool(error.name) and (name == error.name or name.startswith(f"{error.name}."))


def _in_directory(folder: str, top: str, dotted: bool) -> bool:
    """Whether ``folder`` holds a module or package named ``top`` (for a dotted path, any folder
    of that name: a namespace package)."""
    path = os.path.join(folder, top)
    if os.path.isfile(os.path.join(path, "__init__.py")) or (dotted and os.path.isdir(path)):
        return True
    return any(os.path.isfile(path + suffix) for suffix in importlib.machinery.all_suffixes())


def _on_sys_path(folder: str) -> bool:
    """Whether ``folder`` is on sys.path already ("" standing for the current directory)."""
    real = os.path.realpath(folder)
    return any(os.path.realpath(entry or os.curdir) == real for entry in sys.path if isinstance(entry, str))


def searched_paths() -> list[str]:
    """sys.path without the standard library's folders: where an engine module could have been."""
    stdlib = os.path.realpath(sysconfig.get_path("stdlib"))
    kept = []
    for entry in sys.path:
        real = os.path.realpath(entry or os.curdir)
        in_stdlib = real == stdlib or (real.startswith(stdlib + os.sep) and "-packages" not in real)
        if not (in_stdlib or entry.endswith(".zip")):
            kept.append(entry or "'' (the current directory)")
    return kept


def _not_found_message(spec: str, name: str, missing: str, cwd: str) -> str:
    """Where the module was looked for, and what makes it importable."""
    if "." in missing:  # a package on the path was found, a module inside it was not
        parent, _, child = missing.rpartition(".")
        module = sys.modules.get(parent)
        if module is not None and not hasattr(module, "__path__"):
            return (f"No module named {missing!r}: {parent} ({getattr(module, '__file__', None) or 'found'}) is a "
                    f"module, not a package, so it holds no module {child}")
        folders = ", ".join(getattr(module, "__path__", []))
        found = f"{parent} ({folders})" if folders else parent
        return f"No module named {missing!r}: the package {found} has no module {child}"
    top = name.split(".")[0]
    pythonpath = os.environ.get("PYTHONPATH")
    where = "; ".join([*searched_paths(), f"PYTHONPATH={pythonpath}" if pythonpath else "PYTHONPATH unset"])
    return (f"No module named {top!r} ({spec!r} is not one of the engine names {', '.join(ENGINES)} either). "
            f"Looked on sys.path ({where}) and in the current directory {cwd} (no {top}.py, no package {top}/). "
            f"Run from the folder that holds {top}.py (or {top}/), or put that folder on PYTHONPATH "
            "(PYTHONPATH=/path/to/that/folder)")


def _bad_name_message(spec: str) -> str:
    """What an engine name that is no module path should have been (a file's module name)."""
    message = f"expected {', '.join(ENGINES)} or a module path such as mypkg.my_engine, got {spec!r}"
    stem, extension = os.path.splitext(os.path.basename(spec.rstrip("/\\")))
    if MODULE_PATH.fullmatch(stem) and (extension == ".py" or os.path.exists(spec)):
        message += (f"; for the file {spec} give its module name, {stem} (from the folder that holds it, or "
                    "with that folder on PYTHONPATH)")
    return message
