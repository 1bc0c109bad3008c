"""Architectures beyond the MLP: the `--layers` text syntax, the presets' layer lists, and
what the trainer needs to know about a stack (its input shape).

Syntax: layers separated by commas; each is a kind (engine_core.specs.KINDS) with optional
arguments in parentheses, positional in the order of torch's signature or by name, values as
Python literals:

    conv2d(1, 6, 5, padding=2), relu, maxpool2d(2), flatten, linear(1176, 10)

A spec list is stored as JSON (LayerSpec.to_json) in config.json and checkpoints.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

import numpy as np

from engine_core.specs import KINDS, REQUIRED, LayerSpec, output_shape, output_shapes, pair

IMAGE_SHAPE = (1, 28, 28)  # one MNIST-format image: channels, height, width
PIXELS = 784
CLASSES = 10

# LeNet-5 style (LeCun et al. 1998, with ReLU and max-pooling as courses teach it today).
LENET_TEXT = ("conv2d(1, 6, 5, padding=2), relu, maxpool2d(2), conv2d(6, 16, 5), relu, maxpool2d(2), "
              "flatten, linear(400, 120), relu, linear(120, 84), relu, linear(84, 10)")


class LayersSyntaxError(ValueError):
    """A --layers text that does not parse or does not type-check, with where and why."""


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth < 0:
                raise LayersSyntaxError(f"unbalanced ')' in {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise LayersSyntaxError(f"unbalanced '(' in {text!r}")
    parts.append("".join(current))
    return [part.strip() for part in parts]


def parse_layer(item: str) -> LayerSpec:
    """One layer, 'kind' or 'kind(arg, ..., name=value)', as a LayerSpec, by Python's call rules:
    positional arguments first, in torch's order, then keywords, each argument given once.

    Raises LayersSyntaxError naming the layer text: not a call, an unknown kind, too many
    positional arguments, a positional argument after a keyword one, an argument given twice
    ("got multiple values for argument 'in_features'"), a value that is no literal, or one the
    layer refuses (LayerSpec's checks).
    """
    try:
        node = ast.parse(item, mode="eval").body
    except SyntaxError as error:
        if "positional argument follows keyword argument" in str(error.msg):
            # Python's own rule, in its words: positional arguments first, then name=value.
            raise LayersSyntaxError(f"{item!r}: positional argument after a keyword argument (give the "
                                    "positional arguments first, then name=value ones)") from None
        raise LayersSyntaxError(f"{item!r}: expected kind or kind(arguments)") from None
    if isinstance(node, ast.Name):
        name, positional, keywords = node.id, [], []
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, positional, keywords = node.func.id, node.args, node.keywords
    else:
        raise LayersSyntaxError(f"{item!r}: expected kind or kind(arguments)")
    kind = name.lower()
    if kind not in KINDS:
        raise LayersSyntaxError(f"{item!r}: unknown layer {name!r} (expected one of {', '.join(KINDS)})")
    names = list(KINDS[kind][1])
    if len(positional) > len(names):
        raise LayersSyntaxError(f"{item!r}: {kind} takes at most {len(names)} arguments ({', '.join(names)})")
    args = {}
    try:
        for arg_name, value in zip(names, positional):
            args[arg_name] = ast.literal_eval(value)
        for keyword in keywords:
            if keyword.arg is None:
                raise LayersSyntaxError(f"{item!r}: ** arguments are not allowed")
            if keyword.arg in args:
                # An argument given twice (by position and by name, or by name twice) is an error
                # in Python; letting the last one win would silently build another layer.
                raise LayersSyntaxError(f"{item!r}: {kind}() got multiple values for argument {keyword.arg!r}")
            args[keyword.arg] = ast.literal_eval(keyword.value)
    except LayersSyntaxError:
        raise
    except ValueError:
        raise LayersSyntaxError(f"{item!r}: argument values must be literals (numbers, tuples, strings)") from None
    try:
        return LayerSpec(kind, args)
    except (ValueError, TypeError) as error:
        raise LayersSyntaxError(f"{item!r}: {error}") from None


def parse_layers(text: str) -> list[LayerSpec]:
    """A --layers text as a spec list that type-checks from MNIST-format input to 10 classes.

    Raises LayersSyntaxError naming the layer and the problem.
    """
    if not text.strip():
        raise LayersSyntaxError("--layers: empty; expected e.g. 'linear(784, 64), relu, linear(64, 10)'")
    specs = [parse_layer(item) for item in _split_top_level(text)]
    check_stack(specs)
    return specs


def input_shape(specs: Sequence[LayerSpec]) -> tuple[int, ...]:
    """The per-sample input a stack takes: (1, 28, 28) images when it starts with a 2-D layer
    (conv, pool, 2-D batch norm), else 784 flat pixels."""
    first = specs[0].kind if specs else "linear"
    return IMAGE_SHAPE if first in ("conv2d", "maxpool2d", "avgpool2d", "batchnorm2d") else (PIXELS,)


def image_view(x: np.ndarray, specs: Sequence[LayerSpec] | None) -> np.ndarray:
    """Rows of 784 pixels (N, 784) as the stack's input: (N, 1, 28, 28) images when it starts with
    a 2-D layer (a view: no copy), x itself for an MLP (``specs`` None) or a flat stack."""
    if specs is None:
        return x
    return x.reshape(len(x), *input_shape(specs))


def evaluation_chunk(specs: Sequence[LayerSpec] | None, itemsize: int, budget: int = 256 * 2**20,
                     largest: int = 10_000) -> int:
    """How many samples to evaluate at once so that one chunk's activations stay near ``budget``
    bytes: budget / (itemsize * (every layer's output + each convolution's im2col matrix,
    C_in kH kW H_out W_out)) per sample, between 64 and ``largest`` (an MLP: ``largest``).

    LeNet in float32 needs ~0.2 MB a sample (conv1's im2col alone 78 KB), so ~1,300 per chunk.
    """
    if specs is None:
        return largest
    shape = (1, *input_shape(specs))
    values = 0
    for spec in specs:
        out = output_shape(spec, shape)
        values += int(np.prod(out))
        if spec.kind == "conv2d":
            kernel = pair(spec.args["kernel_size"])
            values += spec.args["in_channels"] * kernel[0] * kernel[1] * int(np.prod(out[2:]))
        shape = out
    return int(min(largest, max(64, budget // (itemsize * max(values, 1)))))


def check_stack(specs: Sequence[LayerSpec]) -> None:
    """The stack must type-check from input_shape(specs) and end in (batch, 10) logits."""
    try:
        shapes = output_shapes(specs, (2, *input_shape(specs)))
    except ValueError as error:
        raise LayersSyntaxError(f"--layers: {error}") from None
    if shapes[-1] != (2, CLASSES):
        raise LayersSyntaxError(
            f"--layers: the last layer outputs {shapes[-1][1:]} per sample; expected {CLASSES} logits")


def format_layers(specs: Sequence[LayerSpec]) -> str:
    """The text syntax for a spec list, arguments that differ from the defaults only (parse_layers' inverse)."""
    items = []
    for spec in specs:
        defaults = KINDS[spec.kind][1]
        shown = [repr(v) if defaults[k] is REQUIRED else f"{k}={v!r}"
                 for k, v in spec.args.items() if defaults[k] is REQUIRED or v != defaults[k]]
        items.append(f"{spec.kind}({', '.join(shown)})" if shown else spec.kind)
    return ", ".join(items)


LENET = parse_layers(LENET_TEXT)
