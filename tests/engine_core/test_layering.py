"""The core is engine-neutral: engine_core and numpy_net import no torch, torch_net imports no
numpy_net (fresh processes: imports are the point)."""

from __future__ import annotations

import subprocess
import sys


def test_the_core_imports_no_torch_and_torch_net_imports_no_numpy_net():
    checks = ["import sys, engine_core, numpy_net; assert 'torch' not in sys.modules, 'core/numpy imported torch'",
              "import sys, torch_net, torch_net.autograd; assert 'numpy_net' not in sys.modules, sorted(sys.modules)"]
    processes = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for code in checks]
    for code, process in zip(checks, processes):  # the two interpreters start side by side
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, (code, stderr[-500:])
