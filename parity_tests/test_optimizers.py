"""Properties 2 and 3: one optimizer step, and a trajectory of steps, leave the same parameters
(and optimizer buffers) in every engine as in torch.optim."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from .compare import check_close, compare_trajectories, gradient_scale, max_abs, run_pass, train_steps
from .engines import oracle
from .strategies import adam_specs, batches, net_specs, sgd_specs

ORACLE = oracle()


@st.composite
def optimizer_problems(draw, optimizers, steps: tuple[int, int], dtype: str | None = None):
    """(network, optimizer settings, a list of batches to take one step on each)."""
    spec = draw(net_specs(max_width=16, dtype=dtype))
    n = draw(st.integers(*steps))
    batch_list = [draw(batches(spec.sizes[0], spec.sizes[-1])) for _ in range(n)]
    return spec, draw(optimizers), batch_list


def _sgd_agrees_with_torch_optim(engine, problem) -> None:
    spec, opt_spec, batch_list = problem
    note(f"engine={engine.name} spec={spec} sgd={opt_spec} batches={batch_list!r}")
    ref = train_steps(ORACLE, spec, opt_spec, batch_list)
    got = train_steps(engine, spec, opt_spec, batch_list)
    compare_trajectories(got, ref, spec, opt_spec.lr, engine.name)


@given(optimizer_problems(sgd_specs(), steps=(1, 1)))
def test_one_sgd_step_leaves_the_parameters_torch_optim_leaves(engine, problem):
    """Every option combination of torch.optim.SGD (lr, momentum, dampening, nesterov, wd)."""
    _sgd_agrees_with_torch_optim(engine, problem)


@given(optimizer_problems(sgd_specs(), steps=(2, 5)))
def test_sgd_trajectories_and_momentum_buffers_stay_in_agreement(engine, problem):
    """Several steps: momentum buffers after the first step follow b = mu b + (1 - tau) g."""
    _sgd_agrees_with_torch_optim(engine, problem)


@given(optimizer_problems(adam_specs(), steps=(1, 4), dtype="float64"))
def test_adam_and_adamw_after_backprop_follow_torch_optim_step_by_step(engine, problem):
    """Backprop + torch.optim.Adam/AdamW (moments, bias correction, eps, coupled/decoupled wd,
    amsgrad), in float64. Adam divides each gradient by its own magnitude (+ eps), so where a
    gradient is pure rounding noise of size ~eps its step is +-lr whatever the noise's sign:
    in float32 that noise (~1e-8 of the gradient scale) sits right at eps = 1e-8, and no
    tolerance short of lr itself could be honest. float64's noise is 1e8 times below eps.
    The float32 optimizer itself is checked from identical gradients below."""
    spec, opt_spec, batch_list = problem
    engine.require(opt_spec.kind)
    note(f"engine={engine.name} spec={spec} adam={opt_spec} batches={batch_list!r}")
    ref = train_steps(ORACLE, spec, opt_spec, batch_list)
    got = train_steps(engine, spec, opt_spec, batch_list)
    # The update itself is at most ~lr per element, so lr is the scale of a parameter's change.
    # A gradient that is 0 in exact arithmetic comes out as rounding noise (<= 64 u times the
    # gradient scale); Adam turns noise n into a step of lr * n / eps, which is allowed for.
    gs = gradient_scale(ref[0]["pass"])
    noise = 64 * np.finfo(spec.dtype).eps * gs
    compare_trajectories(got, ref, spec, opt_spec.lr / max(gs, 1e-30), engine.name,
                          param_atol=opt_spec.lr * min(1.0, noise / opt_spec.eps))


def _set_gradients(engine, net, grads: dict[str, np.ndarray]) -> None:
    """Write the same gradients into any engine (the arrays its optimizer reads)."""
    if engine.name == ORACLE.name:
        import torch

        for name, param in net.named_parameters().items():
            value = torch.from_numpy(np.ascontiguousarray(grads[name]))
            param.grad = (value.t() if name.endswith("weight") else value).contiguous().to(param.dtype)
        return
    for name, target in net.grads().items():
        if isinstance(target, np.ndarray):
            target[...] = grads[name]
        else:
            import torch

            target.copy_(torch.from_numpy(np.ascontiguousarray(grads[name])))


@given(net_specs(max_width=8), adam_specs(), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_adam_and_adamw_steps_from_identical_gradients_match_torch_optim(engine, spec, opt_spec, steps, seed):
    """The optimizer alone, both dtypes: the same gradients (including some far below eps) go
    into every engine's Adam/AdamW and into torch.optim's; the parameters and moments that come
    out agree within the dtype's rtol of lr (the largest change one step can make)."""
    engine.require(opt_spec.kind)
    rng = np.random.default_rng(seed)
    nets, opts = {}, {}
    for e in (engine, ORACLE):
        nets[e.name] = spec.build(e)
        opts[e.name] = opt_spec.build(e, nets[e.name])
    for step in range(1, steps + 1):
        shapes = {k: v.shape for k, v in nets[ORACLE.name].state_dict().items()}
        grads = {k: (rng.standard_normal(shape) * 10.0 ** rng.integers(-12, 1, shape)).astype(spec.dtype)
                 for k, shape in shapes.items()}
        for e in (engine, ORACLE):
            _set_gradients(e, nets[e.name], grads)
            opts[e.name].step()
        got, want = nets[engine.name].state_dict(), nets[ORACLE.name].state_dict()
        for key in want:
            scale = max(max_abs([want[key]]), opt_spec.lr)
            check_close(f"{engine.name}: step {step}: parameter {key!r}", got[key], want[key], scale, spec.dtype,
                        f"(first step out of tolerance: {step})")
        got_state, want_state = opts[engine.name].state_dict()["state"], opts[ORACLE.name].state_dict()["state"]
        for buf, per in want_state.items():
            for key, value in per.items():
                check_close(f"{engine.name}: step {step}: {buf}[{key!r}]", got_state[buf][key], value,
                            max(max_abs([value]), np.finfo(float).tiny), spec.dtype)


@pytest.mark.parametrize("kwargs", [{"lr": -1.0}, {"momentum": -0.1}, {"weight_decay": -1e-3}, {"nesterov": True},
                                    {"nesterov": True, "momentum": 0.9, "dampening": 0.1}])
def test_sgd_rejects_what_torch_optim_sgd_rejects_with_its_message(engine, kwargs):
    import torch

    kwargs = {"lr": 0.1, **kwargs}
    with pytest.raises(ValueError) as theirs:
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], **kwargs)
    _refused_as_torch_refuses(lambda: engine.SGD(engine.MLP([3, 2], seed=0), **kwargs), str(theirs.value),
                              f"{engine.name}: SGD({_arguments(kwargs)})")


@pytest.mark.parametrize("kwargs", [{"lr": -1.0}, {"eps": -1.0}, {"betas": (1.0, 0.9)}, {"betas": (0.9, -0.1)},
                                    {"weight_decay": -1.0}])
@pytest.mark.parametrize("kind", ["Adam", "AdamW"])
def test_adam_rejects_what_torch_optim_adam_rejects_with_its_message(engine, kind, kwargs):
    import torch

    engine.require(kind)
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, kind)([torch.zeros(1, requires_grad=True)], **kwargs)
    _refused_as_torch_refuses(lambda: getattr(engine, kind)(engine.MLP([3, 2], seed=0), **kwargs),
                              str(theirs.value), f"{engine.name}: {kind}({_arguments(kwargs)})")


def _arguments(kwargs: dict) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


def _refused_as_torch_refuses(make, message: str, what: str) -> None:
    """``make()`` must raise ValueError with torch.optim's ``message`` (the protocol: an optimizer
    refuses what torch's refuses, in torch's words), and the failure says so when it does not."""
    __tracebackhide__ = True
    try:
        make()
    except ValueError as error:
        assert message in str(error), f"{what} refused with {str(error)!r}: torch.optim says {message!r}"
    except Exception as error:
        pytest.fail(f"{what} raised {type(error).__name__}: {error}; torch.optim raises ValueError({message!r})")
    else:
        pytest.fail(f"{what} was accepted; torch.optim refuses it with ValueError({message!r})")


@pytest.mark.parametrize("direction", ["engine to oracle", "oracle to engine"])
def test_adam_state_moves_to_and_from_the_oracle_and_training_continues_alike(engine, direction):
    """Two AdamW (amsgrad) steps in one, its parameters and optimizer state loaded into both,
    a third step in each: the same parameters (float64; rounding only)."""
    from .strategies import AdamSpec, Batch, NetSpec

    engine.require("AdamW")
    spec = NetSpec(sizes=(5, 4, 3), activation="tanh", init="he_normal", seed=2, dtype="float64")
    adam = AdamSpec(kind="AdamW", lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01, amsgrad=True)
    rng = np.random.default_rng(0)
    batches = [Batch(x=rng.standard_normal((6, 5)), y=rng.integers(0, 3, 6)) for _ in range(3)]
    source = engine if direction == "engine to oracle" else ORACLE
    net = spec.build(source)
    opt = adam.build(source, net)
    for batch in batches[:2]:
        run_pass(source, net, spec, batch)
        opt.step()
    params, state = net.state_dict(), opt.state_dict()
    assert state["step"] == 2 and sorted(state["state"]) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    results = {}
    for target in (engine, ORACLE):
        other = spec.build(target)
        other.load_state_dict(params)
        other_opt = adam.build(target, other)
        other_opt.load_state_dict(state)
        other_opt.zero_grad()
        run_pass(target, other, spec, batches[2])
        other_opt.step()
        results[target.name] = other.state_dict()
    for key, value in results[engine.name].items():
        check_close(f"{engine.name}: {direction}: after the third step, parameter {key!r}", value,
                    results[ORACLE.name][key], 1.0, spec.dtype, rtol=0.0, atol=1e-12)
