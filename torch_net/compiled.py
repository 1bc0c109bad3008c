"""The torch engine's hand-written training step captured whole by torch.compile.

The same forward, the same written-out backward and the same optimizer update as an uncompiled
step (no autograd anywhere): torch.compile traces the Python of this engine's layers into one
graph and hands it to its default backend (Inductor), which fuses the element-wise work around
the matrix products. The result must equal the uncompiled engine to float64 rounding:
tests/torch_net/test_compiled.py proves it along training trajectories of the harness's random MLPs and
CNNs (parity_tests.compare.compare_trajectories), and `backprop bench` times it beside
torch.compile'd autograd (its torch+compile row).

What tracing needs from the engine, and why:
- The checks that read a tensor's values or addresses on the host (a finite input, a finite loss,
  an input overlapping a layer's buffers, MaxPool2d's NaN routing) are skipped while tracing
  (torch_net.checks.compiling): a graph cannot branch on data. The compiled step checks the loss
  on the host after each step instead, so a non-finite batch still raises NonFiniteError (after
  the update, which an uncompiled step would have refused to make).
- The optimizer's step count is passed in as an argument: an attribute read inside the graph is
  compiled as a constant, so every step would compile anew. As an argument, torch.compile makes
  it a variable after its second value (automatic dynamic).
- The parameters are views of one flat tensor; Inductor's default view replay for outputs that
  alias an input fails on them (torch 2.14: "incorrect out shape after application of ViewMeta
  sequence"), so outputs are regenerated with as_strided instead
  (torch._functorch.config.view_replay_for_aliased_outputs = False).
- The loss is a Python float computed from a tensor, so scalar outputs are captured in the graph
  (torch._dynamo.config.capture_scalar_outputs) instead of breaking it; the graph returns the
  summed per-sample losses as a tensor (SoftmaxCrossEntropy.sample_losses), divided on the host,
  because Inductor hands scalar outputs back as float32.
- The first step runs uncompiled, so that the state a step creates (momentum buffers, Adam's
  moments, the layers' buffers) exists before tracing.
The learning rate is a constant of the graph: changing it (a schedule) compiles again, so this
step is for a fixed learning rate; so is BatchNorm's num_batches_tracked, which makes a network
with BatchNorm compile at every step until Dynamo's recompile limit, where the step raises.
"""

from __future__ import annotations

import functools
import itertools
import math
import types
from collections.abc import Callable

import torch

from engine_core.errors import NonFiniteError

from .losses import SoftmaxCrossEntropy
from .model import Sequential
from .optim import Optimizer, clip_grad_norm_

_NUMBERS = itertools.count()
CompiledStep = Callable[[torch.Tensor, torch.Tensor], tuple[float, int]]


def compiled_step(net: Sequential, optimizer: Optimizer, loss_fn: SoftmaxCrossEntropy,
                  clip_grad_norm: float | None = None) -> CompiledStep:
    """One training step, forward -> loss -> backward -> (clip_grad_norm_) -> optimizer.step(), as
    a function (x, y) -> (mean loss, correct predictions) compiled by torch.compile.

    x: the net's input batch, y: (B,) int64 labels. The first call runs uncompiled; the second
    compiles (seconds, a minute for an LSTM on 2 cores) and the third again, with the step count
    as a variable; a new input shape or dtype compiles again. Raises NonFiniteError when the loss
    is not finite (checked after the step), and whatever torch.compile raises when no working
    compiler is installed or Dynamo's recompile limit is hit.
    """

    def body(x: torch.Tensor, y: torch.Tensor, step_count: int) -> tuple[torch.Tensor, torch.Tensor]:
        optimizer.step_count = step_count
        logits = net.forward(x)
        loss_fn.forward(logits, y)
        loss_sum = loss_fn.sample_losses.sum()  # type: ignore[union-attr]  # set by forward
        net.backward(loss_fn.backward(), input_grad=False)
        if clip_grad_norm is not None:
            clip_grad_norm_(net, clip_grad_norm)
        optimizer.step()
        return loss_sum, (logits.argmax(1) == y).sum()

    # Dynamo keeps its compiled graphs, and counts recompilations against its limit, per code
    # object: every net would share body's, and from the 9th net on, calls would run uncompiled
    # without a word; and it remembers which sizes varied per function name, so one net's
    # batch sizes made the next net's shapes dynamic. A renamed copy of the code per step
    # function keeps them apart, and a hit limit raises (fail_on_recompile_limit_hit) instead
    # of falling back to eager.
    name = f"compiled_step_{next(_NUMBERS)}"
    code = body.__code__.replace(co_name=name, co_qualname=name)  # type: ignore[call-arg]  # typeshed lacks 3.11+ co_qualname
    body = types.FunctionType(code, body.__globals__, name,
                              body.__defaults__, body.__closure__)
    compiled = torch.compile(body)
    # Made once and entered around every call (a recompilation can happen at any call): building
    # the two patches anew each step cost 183 us, entering these 23 us (this 2-core VM).
    dynamo_settings = torch._dynamo.config.patch(capture_scalar_outputs=True, fail_on_recompile_limit_hit=True)
    functorch_settings = torch._functorch.config.patch(view_replay_for_aliased_outputs=False)
    warm = False

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        nonlocal warm
        if warm:
            with dynamo_settings, functorch_settings:
                loss_sum, hits = compiled(x, y, optimizer.step_count)
        else:
            # The first step runs uncompiled: every check reads its inputs, and the state a step
            # creates (momentum buffers, Adam's moments, the layers' buffers) exists before
            # tracing. Created inside the graph, a momentum buffer came out aliasing the
            # gradient it was cloned from (Inductor, torch 2.14): parameters 6% off at step 2.
            warm = True
            loss_sum, hits = body(x, y, optimizer.step_count)
        loss = float(loss_sum) / len(y)  # as SoftmaxCrossEntropy.forward divides
        if not math.isfinite(loss):
            raise NonFiniteError(f"the loss is {loss} after a compiled step: the batch or the parameters hold a "
                                 "NaN or Inf, or the training diverged")
        return loss, int(hits)

    return step


@functools.cache
def compile_available() -> str | None:
    """None when torch.compile works here (tried on a tiny model, forward and backward), else why
    not, in one line (no C++ compiler, an unsupported Python, ...). Tried once a process."""
    try:
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        torch.compile(model)(torch.ones(2, 4)).sum().backward()
    except Exception as error:  # any failure of the toolchain: the caller reports it
        return f"torch.compile failed on a tiny model ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
    return None
