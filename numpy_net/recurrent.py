"""Recurrent layers in NumPy, backpropagation through time written out: RNN, LSTM and GRU with
torch's equations, parameter names, shapes and gate order (torch.nn.RNN, LSTM and GRU
documentation pages), and LastStep, which keeps the output at the last time step.

A sequence is (T, B, in) (seq_len, batch, features), or (B, T, in) with ``batch_first``. Inside,
everything is time-major: step t's values are one contiguous (B, ...) slab. Per layer k, with H
the hidden size and G the gates (1 for an RNN, 4 for an LSTM, 3 for a GRU):

    weight_ih_l{k} (G H, in_k), weight_hh_l{k} (G H, H), bias_ih_l{k} (G H,), bias_hh_l{k} (G H,)

The input's share of every step's gate pre-activations, x_t W_ih^T + b_ih, is one GEMM over all T
steps; only h_{t-1} W_hh^T has to wait for the previous step, so the loop over time steps is the
one loop (inherent: step t needs step t-1). No loop runs over samples. Every forward starts from
zero states h_0 = c_0 = 0 and keeps the final ones as ``h_n`` (and ``c_n``), (num_layers, B, H).

Backward walks the steps in reverse, carrying dL/dh_t (and for the LSTM dL/dc_t) to step t - 1,
collects every step's gate gradients dA (T, B, G H), and turns them into the weight gradients with
one GEMM each: grad W_ih = dA^T x, grad W_hh = dA_hh^T h_{t-1}, grad b = sum over t and b of dA,
dL/dx = dA W_ih. torch_net/recurrent.py is this file on tensors, line for line.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine_core.checks import check_dtype_name, check_type, native, shape_of
from engine_core.errors import backward_before_forward_message
from engine_core.layer_checks import check_flag
from engine_core.recurrent_checks import RecurrentArgs, check_recurrent_args, check_sequence_facts, sequence_form

from .checks import ARRAY_TYPE, check_delta
from .layers import Layer


def _expit() -> Callable[..., np.ndarray]:
    """scipy.special.expit, the logistic sigmoid 1 / (1 + exp(-z)) without overflow warnings
    (NumPy has none), imported when first needed so that importing numpy_net stays fast."""
    from scipy.special import expit

    return expit  # type: ignore[no-any-return]


class _Recurrent(Layer):
    """What RNN, LSTM and GRU share: arguments, parameters, the input check and the walk over
    stacked layers (layer k + 1 reads layer k's outputs h_1..h_T). Subclasses write one layer's
    pass through time: ``_layer_forward(k, x)`` -> (hs, cache) with hs (T + 1, B, H), hs[0] = 0,
    and ``_layer_backward(k, dout, cache, input_grad)`` -> dL/d(that layer's input)."""

    kind = ""
    accepts_input_grad = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dtype: str = "float32") -> None:
        self.args: RecurrentArgs = check_recurrent_args(self.kind, input_size, hidden_size, num_layers, nonlinearity,
                                                        bias, batch_first)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = self.args.bias, self.args.batch_first
        self.dtype = np.dtype(check_dtype_name(dtype))
        self._names = list(self.args.parameter_shapes())
        for name, shape in self.args.parameter_shapes().items():
            setattr(self, name, np.zeros(shape, self.dtype))
            setattr(self, "grad_" + name, np.zeros(shape, self.dtype))
        self.h_n: np.ndarray | None = None  # (num_layers, B, H): every layer's h_T of the last forward
        self._caches: list[tuple[np.ndarray, ...]] = []  # per layer, what its backward reads
        self._x_shape: tuple[int, ...] | None = None  # the last forward's input shape
        self._expit = _expit()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args.extra_repr()})"

    def weights(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer k (biases None with bias=False)."""
        b_ih = getattr(self, f"bias_ih_l{k}") if self.bias else None
        b_hh = getattr(self, f"bias_hh_l{k}") if self.bias else None
        return getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"), b_ih, b_hh

    def _input_projection(self, k: int, x: np.ndarray) -> np.ndarray:
        """x_t W_ih^T + b_ih for every step at once: (T, B, G H) from x (T, B, in), one GEMM."""
        w_ih, _, b_ih, _ = self.weights(k)
        steps, batch, width = x.shape
        a = np.dot(x.reshape(steps * batch, width), w_ih.T).reshape(steps, batch, -1)
        if b_ih is not None:
            a += b_ih
        return a

    def _check_input(self, x: object) -> np.ndarray:
        if self.input_trusted:
            return x  # type: ignore[return-value]  # a tree validated it (engine_core.SequentialBase)
        if isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[2] == self.input_size and x.size and \
                x.dtype == self.dtype:
            return self._unshared(x)
        check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
        array = native(x)  # type: ignore[arg-type]
        check_sequence_facts(self.describe(), array.shape, array.dtype.name, self.input_size, self.batch_first,
                             self.dtype.name)
        return self._unshared(array)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """torch's ``output``: the top layer's h_t for every t, (T, B, H) or (B, T, H) with
        batch_first, from zero initial states; sets h_n (and c_n). Raises TypeError (not an ndarray,
        another dtype) or ValueError (not 3-D, another width, empty), naming the layer."""
        x = self._check_input(x)
        self._x_shape = x.shape
        # Time-major (T, B, in), contiguous so that every step's slab and the GEMMs' (T B, in) rows are views.
        h = np.ascontiguousarray(x.transpose(1, 0, 2)) if self.batch_first else x
        caches, finals = [], []
        for k in range(self.num_layers):
            hs, cache = self._layer_forward(k, h)
            caches.append(cache)
            finals.append(hs[-1])
            h = hs[1:]  # the next layer's input: this layer's h_1..h_T
        self._caches = caches
        self._finals(finals)
        return h.transpose(1, 0, 2) if self.batch_first else h

    def _finals(self, finals: list[np.ndarray]) -> None:
        self.h_n = np.stack(finals)

    def backward(self, delta: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Fills every parameter's gradient (replacing the last call's) from dL/d(output), shaped
        like the output; returns dL/dx shaped like x (None with input_grad=False). Raises
        RuntimeError before any forward, ValueError/TypeError for a delta of another shape or dtype.
        """
        if self._x_shape is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), sequence_form(self.batch_first, self.hidden_size)))
        steps, batch = self._x_shape[:2][::-1] if self.batch_first else self._x_shape[:2]
        out_shape = (batch, steps, self.hidden_size) if self.batch_first else (steps, batch, self.hidden_size)
        if not self.delta_trusted:
            delta = check_delta(self, delta, out_shape, self.dtype)
        dout = delta.transpose(1, 0, 2) if self.batch_first else delta  # time-major dL/dh_t, (T, B, H)
        for k in reversed(range(self.num_layers)):
            dout = self._layer_backward(k, dout, self._caches[k], k > 0 or input_grad)  # type: ignore[assignment]
        if not input_grad:
            return None
        return np.ascontiguousarray(dout.transpose(1, 0, 2)) if self.batch_first else dout

    def _weight_gradients(self, k: int, x: np.ndarray, hs: np.ndarray, da_ih: np.ndarray, da_hh: np.ndarray,
                          input_grad: bool) -> np.ndarray | None:
        """Layer k's parameter gradients from every step's gate gradients, one GEMM each:
        grad W_ih = sum_t da_ih[t]^T x_t, grad W_hh = sum_t da_hh[t]^T h_{t-1} (h_0 = 0 adds nothing),
        grad b_ih = sum_t,b da_ih, grad b_hh = sum_t,b da_hh; returns dL/dx_t = da_ih[t] W_ih (T, B, in)."""
        w_ih, _, b_ih, _ = self.weights(k)
        steps, batch, width = x.shape
        rows = da_ih.reshape(steps * batch, -1)
        np.dot(rows.T, x.reshape(steps * batch, width), out=getattr(self, f"grad_weight_ih_l{k}"))
        np.dot(da_hh.reshape(steps * batch, -1).T, hs[:-1].reshape(steps * batch, -1),
               out=getattr(self, f"grad_weight_hh_l{k}"))
        if b_ih is not None:
            np.sum(rows, axis=0, out=getattr(self, f"grad_bias_ih_l{k}"))
            np.sum(da_hh.reshape(steps * batch, -1), axis=0, out=getattr(self, f"grad_bias_hh_l{k}"))
        if not input_grad:
            return None
        return np.dot(rows, w_ih).reshape(steps, batch, width)

    def _layer_forward(self, k: int, x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        raise NotImplementedError

    def _layer_backward(self, k: int, dout: np.ndarray, cache: tuple[np.ndarray, ...],
                        input_grad: bool) -> np.ndarray | None:
        raise NotImplementedError

    def local_parameters(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self._names}

    def local_gradients(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, "grad_" + name) for name in self._names}


class RNN(_Recurrent):
    """torch.nn.RNN, the Elman network: per layer and step,

        h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),  act = tanh or relu (``nonlinearity``).

    Backward through time, dh the gradient reaching h_t (from the output above plus from step t + 1):
        da_t = dh * act'(a_t)  (1 - h_t^2 for tanh; 1 where h_t > 0 for relu, torch's 0 at 0),
        dh_{t-1} = da_t W_hh (added to the output's gradient at t - 1).
    Parameters (G = 1): weight_ih_l{k} (H, in_k), weight_hh_l{k} (H, H), bias_ih_l{k}, bias_hh_l{k} (H,).
    """

    kind = "rnn"

    def _layer_forward(self, k: int, x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        _, w_hh, _, b_hh = self.weights(k)
        a_in = self._input_projection(k, x)
        steps, batch, _ = x.shape
        hs = np.zeros((steps + 1, batch, self.hidden_size), self.dtype)
        for t in range(steps):
            a = a_in[t] + np.dot(hs[t], w_hh.T)
            if b_hh is not None:
                a += b_hh
            hs[t + 1] = np.tanh(a) if self.args.nonlinearity == "tanh" else np.maximum(a, 0)
        return hs, (x, hs)

    def _layer_backward(self, k: int, dout: np.ndarray, cache: tuple[np.ndarray, ...],
                        input_grad: bool) -> np.ndarray | None:
        x, hs = cache
        _, w_hh, _, _ = self.weights(k)
        da = np.empty((len(dout), dout.shape[1], self.hidden_size), self.dtype)
        dh = np.zeros_like(dout[0])  # dL/dh_t arriving from step t + 1
        for t in reversed(range(len(dout))):
            dh += dout[t]
            h = hs[t + 1]
            da[t] = dh * (1 - h * h) if self.args.nonlinearity == "tanh" else dh * (h > 0)
            dh = np.dot(da[t], w_hh)  # dL/dh_{t-1} through the recurrence
        return self._weight_gradients(k, x, hs, da, da, input_grad)


class LSTM(_Recurrent):
    """torch.nn.LSTM: per layer and step, with the gates stacked i, f, g, o in W's rows,

        i = sigmoid(a_i), f = sigmoid(a_f), g = tanh(a_g), o = sigmoid(a_o),
        a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh  (G = 4 blocks of H),
        c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t).

    Backward through time, dh and dc the gradients reaching h_t and c_t from step t + 1 (dh plus
    the output's gradient at t):
        do = dh * tanh(c_t),   dc += dh * o * (1 - tanh(c_t)^2),
        di = dc * g,   dg = dc * i,   df = dc * c_{t-1},   dc_{t-1} = dc * f  (the cell's own path back),
        da_i = di i (1 - i), da_f = df f (1 - f), da_g = dg (1 - g^2), da_o = do o (1 - o),
        dh_{t-1} = da W_hh.
    Sets ``c_n`` (num_layers, B, H) beside h_n. Parameters: weight_ih_l{k} (4H, in_k),
    weight_hh_l{k} (4H, H), bias_ih_l{k}, bias_hh_l{k} (4H,).
    """

    kind = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype: str = "float32") -> None:
        super().__init__(input_size, hidden_size, num_layers, "tanh", bias, batch_first, dtype)
        self.c_n: np.ndarray | None = None

    def _finals(self, finals: list[np.ndarray]) -> None:
        self.h_n = np.stack(finals)
        self.c_n = np.stack([cache[2][-1] for cache in self._caches])

    def _layer_forward(self, k: int, x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        _, w_hh, _, b_hh = self.weights(k)
        size = self.hidden_size
        a_in = self._input_projection(k, x)
        steps, batch, _ = x.shape
        hs = np.zeros((steps + 1, batch, size), self.dtype)
        cs = np.zeros((steps + 1, batch, size), self.dtype)
        gates = np.empty((steps, batch, 4 * size), self.dtype)  # i, f, g, o after their nonlinearities
        tanh_c = np.empty((steps, batch, size), self.dtype)
        for t in range(steps):
            a = a_in[t] + np.dot(hs[t], w_hh.T)
            if b_hh is not None:
                a += b_hh
            gate = gates[t]
            self._expit(a, out=gate)  # i, f and o; g's block is overwritten next
            np.tanh(a[:, 2 * size:3 * size], out=gate[:, 2 * size:3 * size])
            i, f, g, o = gate[:, :size], gate[:, size:2 * size], gate[:, 2 * size:3 * size], gate[:, 3 * size:]
            cs[t + 1] = f * cs[t] + i * g
            np.tanh(cs[t + 1], out=tanh_c[t])
            hs[t + 1] = o * tanh_c[t]
        return hs, (x, hs, cs, gates, tanh_c)

    def _layer_backward(self, k: int, dout: np.ndarray, cache: tuple[np.ndarray, ...],
                        input_grad: bool) -> np.ndarray | None:
        x, hs, cs, gates, tanh_c = cache
        _, w_hh, _, _ = self.weights(k)
        size = self.hidden_size
        da = np.empty_like(gates)
        dh = np.zeros_like(dout[0])  # dL/dh_t arriving from step t + 1
        dc = np.zeros_like(dout[0])  # dL/dc_t arriving from step t + 1
        for t in reversed(range(len(dout))):
            dh += dout[t]
            gate = gates[t]
            i, f, g, o = gate[:, :size], gate[:, size:2 * size], gate[:, 2 * size:3 * size], gate[:, 3 * size:]
            dc += dh * o * (1 - tanh_c[t] * tanh_c[t])
            da[t, :, :size] = dc * g * i * (1 - i)  # da_i
            da[t, :, size:2 * size] = dc * cs[t] * f * (1 - f)  # da_f
            da[t, :, 2 * size:3 * size] = dc * i * (1 - g * g)  # da_g
            da[t, :, 3 * size:] = dh * tanh_c[t] * o * (1 - o)  # da_o
            dc *= f  # dL/dc_{t-1} along the cell
            dh = np.dot(da[t], w_hh)  # dL/dh_{t-1} through the gates
        return self._weight_gradients(k, x, hs, da, da, input_grad)


class GRU(_Recurrent):
    """torch.nn.GRU: per layer and step, with the gates stacked r, z, n in W's rows and torch's
    reset gate applied to the hidden half only (inside its bias, unlike the 2014 paper):

        r = sigmoid(a_ir + a_hr),  z = sigmoid(a_iz + a_hz),  n = tanh(a_in + r * a_hn),
        a_i = x_t W_ih^T + b_ih,  a_h = h_{t-1} W_hh^T + b_hh  (G = 3 blocks of H each),
        h_t = (1 - z) * n + z * h_{t-1}.

    Backward through time, dh the gradient reaching h_t:
        dn = dh (1 - z),  dz = dh (h_{t-1} - n),
        da_n = dn (1 - n^2)  (a_in's gradient),  da_hn = da_n * r,  dr = da_n * a_hn,
        da_r = dr r (1 - r),  da_z = dz z (1 - z),
        dh_{t-1} = dh z + [da_r, da_z, da_hn] W_hh.
    The input side's gate gradients are [da_r, da_z, da_n], the hidden side's [da_r, da_z, da_hn].
    Parameters: weight_ih_l{k} (3H, in_k), weight_hh_l{k} (3H, H), bias_ih_l{k}, bias_hh_l{k} (3H,).
    """

    kind = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype: str = "float32") -> None:
        super().__init__(input_size, hidden_size, num_layers, "tanh", bias, batch_first, dtype)

    def _layer_forward(self, k: int, x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        _, w_hh, _, b_hh = self.weights(k)
        size = self.hidden_size
        a_in = self._input_projection(k, x)
        steps, batch, _ = x.shape
        hs = np.zeros((steps + 1, batch, size), self.dtype)
        gates = np.empty((steps, batch, 3 * size), self.dtype)  # r, z, n after their nonlinearities
        hidden_n = np.empty((steps, batch, size), self.dtype)  # a_hn = (h_{t-1} W_hh^T + b_hh)'s n block
        for t in range(steps):
            a_h = np.dot(hs[t], w_hh.T)
            if b_hh is not None:
                a_h += b_hh
            gate = gates[t]
            self._expit(a_in[t, :, :2 * size] + a_h[:, :2 * size], out=gate[:, :2 * size])
            r, z = gate[:, :size], gate[:, size:2 * size]
            hidden_n[t] = a_h[:, 2 * size:]
            n = np.tanh(a_in[t, :, 2 * size:] + r * hidden_n[t], out=gate[:, 2 * size:])
            hs[t + 1] = (1 - z) * n + z * hs[t]
        return hs, (x, hs, gates, hidden_n)

    def _layer_backward(self, k: int, dout: np.ndarray, cache: tuple[np.ndarray, ...],
                        input_grad: bool) -> np.ndarray | None:
        x, hs, gates, hidden_n = cache
        _, w_hh, _, _ = self.weights(k)
        size = self.hidden_size
        da_ih = np.empty_like(gates)
        da_hh = np.empty_like(gates)
        dh = np.zeros_like(dout[0])  # dL/dh_t arriving from step t + 1
        for t in reversed(range(len(dout))):
            dh += dout[t]
            gate = gates[t]
            r, z, n = gate[:, :size], gate[:, size:2 * size], gate[:, 2 * size:]
            da_n = dh * (1 - z) * (1 - n * n)
            da_ih[t, :, :size] = da_n * hidden_n[t] * r * (1 - r)  # da_r
            da_ih[t, :, size:2 * size] = dh * (hs[t] - n) * z * (1 - z)  # da_z
            da_ih[t, :, 2 * size:] = da_n
            da_hh[t, :, :2 * size] = da_ih[t, :, :2 * size]
            da_hh[t, :, 2 * size:] = da_n * r  # da_hn: the reset gate scales the hidden half
            dh = dh * z + np.dot(da_hh[t], w_hh)  # dL/dh_{t-1}: the direct path and through the gates
        return self._weight_gradients(k, x, hs, da_ih, da_hh, input_grad)


class LastStep(Layer):
    """The output at the last time step, for classifying a sequence: y = x[-1] for x (T, B, F),
    y = x[:, -1] with ``batch_first`` (x (B, T, F)); y is (B, F), a copy.

    Backward: dL/dx is zero at every step but the last, where it is dy. (torch has no such module:
    one writes ``output[:, -1]``.) Raises TypeError for a batch_first that is not True or False,
    and for an input that is no floating ndarray; ValueError for one that is not 3-D.
    """

    def __init__(self, batch_first: bool = False) -> None:
        self.batch_first = check_flag("batch_first", batch_first)
        self._x: tuple[tuple[int, ...], np.dtype] | None = None  # the last input's shape and dtype

    def __repr__(self) -> str:
        return "LastStep(batch_first=True)" if self.batch_first else "LastStep()"

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.input_trusted:
            check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
            x = native(x)
            check_sequence_facts(self.describe(), x.shape, x.dtype.name, None, self.batch_first, None)
        self._x = (x.shape, x.dtype)
        # A copy, always: x[-1] of a time-major x is already contiguous, and ascontiguousarray
        # would hand back a view that a later in-place write to y would carry into the caller's x.
        return np.array(x[:, -1] if self.batch_first else x[-1])

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """dL/dx: zeros shaped like x, dy at the last step. RuntimeError before any forward;
        ValueError/TypeError for a delta that is not (B, F) of x's dtype."""
        if self._x is None:
            raise RuntimeError(backward_before_forward_message(self.describe(), shape_of(delta), "(batch, features)"))
        shape, dtype = self._x
        last = (shape[0], shape[2]) if self.batch_first else (shape[1], shape[2])
        if not self.delta_trusted:
            delta = check_delta(self, delta, last, dtype)
        dx = np.zeros(shape, dtype)
        if self.batch_first:
            dx[:, -1] = delta
        else:
            dx[-1] = delta
        return dx
