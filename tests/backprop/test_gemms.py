"""The matrix products of one training step (backprop/gemms.py), read off a network: MLPs, LeNet's
im2col products, recurrent layers step by step."""

from __future__ import annotations

from backprop.architecture import LENET
from backprop.benchmark import workload_gemms
from backprop.gemms import network_gemms, step_flops, training_gemms
from engine_core.specs import LayerSpec


def test_the_floor_counts_three_gemms_per_layer_but_the_first_layers_input_gradient():
    gemms = training_gemms([784, 64, 10], batch=32)
    shapes = [(g.m, g.k, g.n) for g in gemms]
    assert shapes == [
        (32, 784, 64),  # layer 0 forward x@W
        (32, 64, 10),  # layer 2 forward
        (64, 32, 10),  # layer 2 grad_weight = a^T delta
        (32, 10, 64),  # layer 2 input grad = delta W^T
        (784, 32, 64),  # layer 0 grad_weight; layer 0's input grad is never needed
    ]
    assert [g.what for g in gemms] == ["0.linear forward x@W", "2.linear forward x@W",
                                       "2.linear grad_weight x^T@delta", "2.linear input grad delta@W^T",
                                       "0.linear grad_weight x^T@delta"]  # named by the layer's path
    assert len(training_gemms([784, 64, 64, 64, 64, 64, 10], 32)) == 3 * 6 - 1


def test_the_floor_flops_are_two_m_k_n_summed():
    sizes, batch = [784, 64, 64, 64, 64, 64, 10], 32
    forward = sum(2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    backward_weights = forward
    backward_inputs = forward - 2 * batch * 784 * 64
    assert step_flops(sizes, batch) == forward + backward_weights + backward_inputs


# -- products -----------------------------------------------------------------------------------
def test_lenet_products_are_its_im2col_and_linear_gemms():
    gemms = network_gemms(LENET, 2)
    forward = [(g.m, g.k, g.n) for g in gemms if g.role == "forward"]
    assert forward == [(2 * 28 * 28, 25, 6), (2 * 10 * 10, 150, 16), (2, 400, 120), (2, 120, 84), (2, 84, 10)]
    assert [g.dims for g in gemms if g.role == "grad_input"] == [(2, 84, 10), (2, 120, 84), (2, 400, 120),
                                                                 (200, 150, 16)]  # not conv1's
    assert len(gemms) == 5 + 5 + 4 and gemms == workload_gemms("lenet", 2)


# -- recurrent products (issue 22) ----------------------------------------------------------------
def test_lstm_products_are_the_input_projection_and_every_steps_products_each_way():
    from backprop.architecture import LSTM_NETWORK

    batch, steps, hidden = 2, 28, 128
    gemms = network_gemms(LSTM_NETWORK, batch)
    assert gemms == workload_gemms("lstm", batch)
    forward = [(g.what, g.m, g.k, g.n) for g in gemms if g.role == "forward"]
    # the input projection of all 28 steps in one product, then h_{t-1} W_hh^T per step (h_0 = 0: none at
    # step 0), then the Linear head
    assert forward[0] == ("0.lstm l0 forward x@W_ih^T", steps * batch, 28, 4 * hidden)
    assert forward[1:steps] == [(f"0.lstm l0 step {t} forward h@W_hh^T", batch, hidden, 4 * hidden)
                                for t in range(1, steps)]
    assert forward[steps:] == [("2.linear forward x@W", batch, 128, 10)]
    backward = gemms[len(forward):]
    assert [g.what for g in backward[:2]] == ["2.linear grad_weight x^T@delta", "2.linear input grad delta@W^T"]
    # dgates W_hh carried back to h_{t-1}, last step first, then the weight gradients over all steps
    assert [(g.what, g.dims) for g in backward[2:steps + 1]] == [
        (f"0.lstm l0 step {t} grad_h dgates@W_hh", (batch, hidden, 4 * hidden)) for t in reversed(range(1, steps))]
    assert [(g.role, g.dims) for g in backward[steps + 1:]] == [
        ("grad_weight", (steps * batch, 28, 4 * hidden)), ("grad_weight", ((steps - 1) * batch, hidden, 4 * hidden))]
    # no dL/dx for the first layer: a step never needs it
    assert not any("dgates@W_ih" in g.what for g in gemms) and len(gemms) == 2 * steps + 4
    per_step = 2 * batch * hidden * 4 * hidden
    assert sum(g.flops for g in gemms if "W_hh" in g.what or "^T@h" in g.what) == 3 * (steps - 1) * per_step


def test_stacked_recurrent_layers_pass_their_input_gradient_down_but_the_first_does_not():
    from backprop.architecture import parse_layer

    def stack(*texts: str) -> list[LayerSpec]:  # layers as they are, for any input shape
        return [parse_layer(text) for text in texts]

    gru = stack("linear(28, 6)", "gru(6, 5, num_layers=2, batch_first=True)", "laststep(batch_first=True)",
                "linear(5, 10)")
    gemms = network_gemms(gru, 3, (28, 28))
    dx = [(g.what, g.dims) for g in gemms if "dgates@W_ih" in g.what]
    assert dx == [("1.gru l1 input grad dgates@W_ih", (28 * 3, 5, 15)),
                  ("1.gru l0 input grad dgates@W_ih", (28 * 3, 6, 15))]  # the Linear below needs l0's
    assert [g.what for g in gemms if g.role == "forward"][:2] == ["0.linear forward x@W", "1.gru l0 forward x@W_ih^T"]
    assert not any("0.linear input grad" in g.what for g in gemms)
    # T and B from the layer's input, (B, T, F) with batch_first, else (T, B, F); one step needs no W_hh product
    rnn = stack("rnn(28, 4, bias=False, batch_first=True)", "laststep(batch_first=True)", "linear(4, 10)")
    assert [(g.m, g.k, g.n) for g in network_gemms(rnn, 5, (1, 28)) if "rnn" in g.what] == [
        (5, 28, 4), (28, 5, 4)]  # forward x@W_ih^T and grad W_ih; nothing with W_hh
    time_major = stack("rnn(28, 4)", "laststep", "linear(4, 10)")  # (6, 5, 28): 6 steps of 5 sequences
    forward = [g.m for g in network_gemms(time_major, 6, (5, 28)) if g.role == "forward"]
    assert forward == [6 * 5, 5, 5, 5, 5, 5, 5]  # x@W_ih^T, 5 steps' h@W_hh^T, the Linear on (5, 4)
