"""Property 4: central finite differences in float64 agree with both engines' analytic
gradients. This check does not rely on torch autograd at all."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, note

from .strategies import problems

H = 1e-6  # central differences err by O(H^2 f''') + O(u |L| / H): ~1e-10 + 2e-10 here


def _loss(engine, net, spec, batch) -> float:
    loss_fn = engine.SoftmaxCrossEntropy()
    return loss_fn.forward(net.forward(engine.asarray(batch.x, "float64")), engine.labels(batch.y))


@given(problems(dtype="float64", max_layers=3, max_width=5))
def test_central_differences_match_the_analytic_gradient(engine, problem):
    """|fd - analytic| <= 1e-6 * max(1, |analytic|): 1e-6 sits well above the FD error (~3e-10)
    and well below any real gradient bug (O(1) relative)."""
    spec, batch = problem
    note(f"engine={engine.name} spec={spec} batch={batch!r}")
    net = spec.build(engine)
    loss_fn = engine.SoftmaxCrossEntropy()
    loss_fn.forward(net.forward(engine.asarray(batch.x, "float64")), engine.labels(batch.y))
    net.backward(loss_fn.backward())
    analytic = {k: engine.to_numpy(v).copy() for k, v in net.grads().items()}
    if spec.activation == "relu":
        # A difference that straddles ReLU's kink at 0 measures neither side's slope.
        pre = _pre_activations(net, spec, batch)
        assume(all(np.all(np.abs(z) > 1e-4) for z in pre))
    state = net.state_dict()
    for key, value in state.items():
        for index in np.ndindex(value.shape):
            shifted = {k: v.copy() for k, v in state.items()}
            shifted[key][index] = value[index] + H
            net.load_state_dict(shifted)
            up = _loss(engine, net, spec, batch)
            shifted[key][index] = value[index] - H
            net.load_state_dict(shifted)
            down = _loss(engine, net, spec, batch)
            numeric = (up - down) / (2 * H)
            exact = analytic[key][index]
            assert abs(numeric - exact) <= 1e-6 * max(1.0, abs(exact)), (
                f"{engine.name}: d loss / d {key}{list(index)}: finite difference {numeric!r}, "
                f"analytic {exact!r}"
            )
        net.load_state_dict(state)


def _pre_activations(net, spec, batch):
    """z of every Linear, recomputed from the state dict in NumPy (engine-independent)."""
    h = np.asarray(batch.x, np.float64)
    state = net.state_dict()
    zs = []
    for i in range(len(spec.sizes) - 1):
        z = h @ state[f"{2 * i}.weight"] + state[f"{2 * i}.bias"]  # Linear i sits at index 2i
        zs.append(z)
        h = np.maximum(z, 0)
    return zs
