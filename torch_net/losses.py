"""Softmax cross-entropy, fused: the loss and the delta that starts backprop (on tensors)."""

from __future__ import annotations

import math

import torch

from .checks import check_label_shape, check_labels, check_logits, compiling, raise_non_finite_logits


class SoftmaxCrossEntropy:
    """L = mean_b [logsumexp(z_b) - z_b[y_b]]; dL/dz = (softmax(z) - onehot(y)) / B, z (B, C).

    log-sum-exp is taken after subtracting each row's maximum, so no exp overflows and
    log(softmax) is never formed: saturated logits give a finite loss and gradient.
    """

    def __init__(self) -> None:
        self.probs: torch.Tensor | None = None  # softmax(z) of the last forward, (B, C)
        self.y: torch.Tensor | None = None
        # -log softmax(z)_y of every sample of the last forward, (B, 1): a tensor, which a
        # compiled step (torch_net.compiled) returns from its graph, where a float would not be
        # exact (Inductor's scalar outputs are float32). numpy_net has no compiler and no such
        # attribute: its loss is the difference of two sums, rounded as before.
        self.sample_losses: torch.Tensor | None = None

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        """The mean loss (a Python float) for logits (B, C) float32/float64 and labels y (B,)
        of any integer dtype, values in [0, C).

        Raises TypeError/ValueError for bad tensors and NonFiniteError for NaN/Inf logits.
        """
        logits = check_logits(logits).detach()  # the hand-written engine records no graph
        batch, classes = logits.shape
        y = check_label_shape(y, batch)
        if (
            self.probs is None
            or self.probs.shape != logits.shape
            or self.probs.dtype != logits.dtype
            or self.probs.device != logits.device
        ):
            self.probs = torch.empty_like(logits)
            self._delta = torch.empty_like(logits)
            self._minus_one = torch.full((batch, 1), -1.0, dtype=logits.dtype, device=logits.device)
        shifted = self.probs
        torch.sub(logits, logits.amax(dim=1, keepdim=True), out=shifted)
        y_column = y.view(-1, 1)
        try:  # gather checks the range itself (negative labels too), so valid labels cost nothing
            picked = shifted.gather(1, y_column)  # z_y - max, before shifted becomes exp(shifted)
        except (RuntimeError, IndexError):
            check_labels(y, batch, classes)  # raises the clear message
            raise
        shifted.exp_()
        total = shifted.sum(dim=1, keepdim=True)
        shifted /= total  # now softmax(z)
        self.sample_losses = total.log_().sub_(picked)  # in place: total and picked are ours
        loss = float(self.sample_losses.sum()) / batch
        self._y_column = y_column
        self.y = y
        if not compiling() and not math.isfinite(loss):
            raise_non_finite_logits(logits)
        return loss

    def backward(self) -> torch.Tensor:
        """dL/dlogits (B, C); reused buffer, valid until the next backward."""
        if self.probs is None or self.y is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward() called before forward()")
        delta = self._delta
        batch = delta.shape[0]
        delta.copy_(self.probs)
        delta.scatter_add_(1, self._y_column, self._minus_one)  # subtract onehot(y)
        delta /= batch  # the mean's 1/B, divided as torch's mean backward does
        return delta

    def softmax(self) -> torch.Tensor:
        """softmax(z) of the last forward, (B, C)."""
        if self.probs is None:
            raise RuntimeError("SoftmaxCrossEntropy.softmax() called before forward()")
        return self.probs
