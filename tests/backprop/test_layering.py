"""The application's layering: training never depends on the benchmark (issue 20), and one
representation of a network, with no branch on an MLP-or-stack split."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.helpers import ROOT


def test_the_command_line_and_training_import_neither_the_benchmark_nor_its_floor():
    code = ("import sys, backprop.cli, backprop.training, backprop.threads; "
            "print(sorted(m for m in sys.modules if m in ('backprop.benchmark', 'backprop.floor')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_no_module_of_the_application_branches_on_whether_a_network_is_a_layer_stack():
    pattern = re.compile(r"layers is (not )?None")
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "backprop")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    found += [f"{path}:{n}" for n, line in enumerate(f, 1) if pattern.search(line)]
    assert found == []
