"""Sequential and MLP for the torch engine (numpy_net.model on tensors).

Sequential stores every parameter (and every gradient) as a view into one flat tensor, so an
optimizer updates the whole network with a handful of whole-tensor operations.
"""

from __future__ import annotations

import numpy as np
import torch

from .checks import check_choice, check_dtype_name, check_features, check_finite_input, check_sizes, check_state_dict
from .init import initial_parameters
from .layers import ACTIVATIONS, Layer, Linear


class Sequential(Layer):
    """layers[-1](...layers[0](x)); backward runs them in reverse."""

    def __init__(self, *layers: Layer) -> None:
        self.layers = list(layers)
        self.linears = [layer for layer in self.layers if isinstance(layer, Linear)]
        self._pack()

    # -- parameters ---------------------------------------------------------------------
    def _named(self) -> list[tuple[str, Layer, str]]:
        return [
            (f"fc{i}.{attr}", linear, attr)
            for i, linear in enumerate(self.linears)
            for attr in ("weight", "bias")
        ]

    def _pack(self) -> None:
        """Move every parameter and gradient into views of two flat tensors."""
        named = self._named()
        if not named:
            self.flat_parameters = torch.zeros(0)
            self.flat_gradients = torch.zeros(0)
            return
        first = named[0][1].weight
        total = sum(getattr(layer, attr).numel() for _, layer, attr in named)
        self.flat_parameters = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.flat_gradients = torch.zeros_like(self.flat_parameters)
        offset = 0
        for _, layer, attr in named:
            value = getattr(layer, attr)
            size, shape = value.numel(), value.shape
            view = self.flat_parameters[offset : offset + size].view(shape)
            view.copy_(value)
            setattr(layer, attr, view)
            setattr(layer, "grad_" + attr, self.flat_gradients[offset : offset + size].view(shape))
            offset += size

    def parameters(self) -> dict[str, torch.Tensor]:
        """{"fc0.weight": (in, out), "fc0.bias": (out,), ...}: the live tensors."""
        return {name: getattr(layer, attr) for name, layer, attr in self._named()}

    def gradients(self) -> dict[str, torch.Tensor]:
        return {name: getattr(layer, "grad_" + attr) for name, layer, attr in self._named()}

    def grads(self) -> dict[str, torch.Tensor]:
        """dL/dparameter of the last backward, same keys as state_dict()."""
        return self.gradients()

    def deltas(self) -> list[torch.Tensor]:
        """dL/dz for each Linear's output z (its pre-activation), first layer first."""
        return [linear.delta for linear in self.linears]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters as NumPy arrays, weights (in, out)."""
        return {name: value.detach().cpu().numpy().copy() for name, value in self.parameters().items()}

    def load_state_dict(self, state: dict) -> None:
        """Copy values in (any engine's arrays); all-or-nothing: everything is checked first."""
        params = self.parameters()
        arrays = check_state_dict({k: tuple(v.shape) for k, v in params.items()}, state)
        for name, value in arrays.items():
            # float64 -> float32 rounds to nearest, exactly as NumPy's cast does.
            params[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))

    def zero_grad(self) -> None:
        self.flat_gradients.zero_()

    # -- computation --------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, delta: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        """Fills every gradient; returns dL/dx (None with input_grad=False)."""
        first = self.layers[0]
        for layer in reversed(self.layers[1:]):
            delta = layer.backward(delta)
        if isinstance(first, Linear):
            return first.backward(delta, input_grad=input_grad)
        return first.backward(delta)


class MLP(Sequential):
    """Linear, activation, ..., Linear for sizes [in, h1, ..., out]; no activation after the last."""

    def __init__(
        self,
        sizes: list[int],
        activation: str = "relu",
        init: str = "xavier_normal",
        seed: int = 0,
        dtype: str = "float32",
        device: str = "cpu",
    ) -> None:
        sizes = check_sizes(sizes)
        check_choice("activation", activation, ACTIVATIONS)
        self.sizes = sizes
        self.activation = activation
        self.init = init
        self.seed = seed
        self.dtype = check_dtype_name(dtype)
        self._torch_dtype = getattr(torch, self.dtype)
        self.device = torch.device(device)
        layers: list[Layer] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i:
                # In place is safe: the activation only ever sees the Linear's own buffers.
                layers.append(ACTIVATIONS[activation](inplace=True))
            layers.append(Linear(fan_in, fan_out, self.dtype, self.device))
        super().__init__(*layers)
        self.load_state_dict(initial_parameters(sizes, init, seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """logits (B, out) for x (B, in); a fresh tensor (internal buffers are reused)."""
        check_features(x, self.sizes[0], self._torch_dtype, self.device)
        layers = self.layers
        h = layers[0].forward(x)
        check_finite_input(x, h)
        for layer in layers[1:]:
            h = layer.forward(h)
        return h.clone()

