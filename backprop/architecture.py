"""Networks as the application sees them: the `--layers` text syntax, the presets' trees, and
what the trainer needs to know about a network (its input shape, how to show it).

Syntax: layers separated by commas (a trailing one allowed); each is a kind
(engine_core.specs.KINDS) with optional arguments in parentheses, positional in the order of
torch's signature or by name, with torch's names and defaults (layer_signature), values as Python
literals (5, (5, 3), 0.25, True, None, 'same'; a list is read as the tuple); a container
(``sequential``) takes layers as its arguments and nests:

    conv2d(1, 6, 5, padding='same'), relu, maxpool2d(2), flatten, sequential(linear(1176, 64), relu), linear(64, 10)

The text is the root Sequential's children. A network is stored as JSON (LayerSpec.to_json) in
config.json and checkpoints.

A network that starts with a recurrent layer (rnn, lstm, gru) reads an image row by row: 28 time
steps of 28 pixels, fed as (batch, 28, 28), so its sequence layers take batch_first=True:

    lstm(28, 128, batch_first=True), laststep(batch_first=True), linear(128, 10)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

import numpy as np

from engine_core.specs import (
    KINDS,
    REQUIRED,
    LayerSpec,
    as_network,
    given_args,
    leaf_shapes,
    mlp_of,
    output_shape,
    pair,
)

IMAGE_SHAPE = (1, 28, 28)  # one MNIST-format image: channels, height, width
SEQUENCE_SHAPE = (28, 28)  # the same image as a sequence: 28 rows (time steps) of 28 pixels
PIXELS = 784
CLASSES = 10
RECURRENT = ("rnn", "lstm", "gru")
# Layers that read a sequence (batch, seq_len, features) with batch_first=True, (seq_len, batch,
# features) without.
SEQUENCE_LAYERS = (*RECURRENT, "multiheadattention", "transformerencoderlayer", "positionalembedding",
                   "sequencemean", "laststep")

# LeNet-5 style (LeCun et al. 1998, with ReLU and max-pooling as courses teach it today).
LENET_TEXT = ("conv2d(1, 6, 5, padding=2), relu, maxpool2d(2), conv2d(6, 16, 5), relu, maxpool2d(2), "
              "flatten, linear(400, 120), relu, linear(120, 84), relu, linear(84, 10)")


# MNIST read row by row (28 steps of 28 pixels): a recurrent layer of 128, its last step, 10 logits.
LSTM_TEXT = "lstm(28, 128, batch_first=True), laststep(batch_first=True), linear(128, 10)"
GRU_TEXT = "gru(28, 128, batch_first=True), laststep(batch_first=True), linear(128, 10)"

# A tiny vision transformer: 16 tokens of 7x7 pixels, each projected to 64 and given a learned
# position, two pre-LN encoder layers (4 heads, feed-forward 128, torch's default relu, no dropout),
# a final LayerNorm, the tokens' mean, 10 logits. (gelu would cost the NumPy engine a third of its
# step: NumPy has no erf, and scipy's takes 6.5 ms for the 2048 x 128 hidden values, torch's 0.5.)
# Each encoder layer has its own seed: with dropout (--layers), their masks must differ.
_ENCODER = "transformerencoderlayer(64, 4, 128, 0.0, batch_first=True, norm_first=True{})"
VIT_TEXT = (f"patches(7), linear(49, 64), positionalembedding(16, 64, batch_first=True), {_ENCODER.format('')}, "
            f"{_ENCODER.format(', seed=1')}, layernorm(64), sequencemean(batch_first=True), linear(64, 10)")


class LayersSyntaxError(ValueError):
    """A --layers text that does not parse or does not type-check, with where and why."""


def _split_top_level(text: str) -> list[str]:
    """The layers of a --layers text: split at the commas outside parentheses, brackets and string
    literals ('same' may hold anything). One trailing comma is allowed, as Python allows it, and
    so inside sequential(...) too; an empty layer between two commas is refused."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quote = ""  # the quote character of the string literal the scan is in
    chars = iter(text)
    for char in chars:
        if quote:
            current.append(char)
            if char == "\\":
                current.append(next(chars, ""))  # an escaped character, a quote included
            elif char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char in "([":
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
    if quote:
        raise LayersSyntaxError(f"unterminated string ({quote}...) in {text!r}")
    if depth:
        raise LayersSyntaxError(f"unbalanced '(' in {text!r}")
    parts.append("".join(current))
    parts = [part.strip() for part in parts]
    if len(parts) > 1 and not parts[-1]:
        parts.pop()  # 'relu, linear(784, 10),': a trailing comma
    for index, part in enumerate(parts):
        if not part:
            where = f"the layer after {parts[index - 1]!r}" if index else "the first layer"
            raise LayersSyntaxError(f"{where} is empty (two commas in a row, or one at the start?) in {text!r}")
    return parts


def parse_layer(item: str) -> LayerSpec:
    """One layer, 'kind' or 'kind(arg, ..., name=value)', as a LayerSpec, by Python's call rules:
    positional arguments first, in torch's order, then keywords, each argument given once; a
    container's positional arguments are its layers ('sequential(linear(4, 3), relu)').

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
        words = _missing_comma(item)
        if words:
            between = " and ".join(repr(word) for word in words)
            raise LayersSyntaxError(f"{item!r}: a comma is missing between {between} (layers are separated by "
                                    "commas)") from None
        call = re.fullmatch(r"\s*\w+\s*\((.*)\)\s*", item, flags=re.S)
        if call and re.search(r"[\w'\")\]]\s+[\w'\"(\[-]", call.group(1)):
            raise LayersSyntaxError(f"{item!r}: expected kind(arguments) with the arguments separated by commas "
                                    "(a comma is missing between two of them?)") from None
        raise LayersSyntaxError(f"{item!r}: expected kind or kind(arguments)") from None
    return _parse_node(node, item)


def _top_level_words(item: str) -> list[str]:
    """``item`` split at the spaces outside parentheses: 'linear(4, 3) relu' -> ['linear(4, 3)', 'relu']."""
    words, current, depth = [], "", 0
    for char in item.strip():
        depth += (char == "(") - (char == ")")
        if char.isspace() and depth == 0:
            if current:
                words.append(current)
            current = ""
        else:
            current += char
    return [*words, current] if current else words


def _missing_comma(item: str) -> list[str] | None:
    """The words of ``item``, or of one layer inside a container's parentheses, when they are
    layers (kind or kind(...): their syntax, whatever the kind) written without the comma between
    them: 'linear(4, 3) relu' -> ['linear(4, 3)', 'relu']; None when no such place is found."""
    words = _top_level_words(item)
    if len(words) > 1 and all(_looks_like_a_layer(word) for word in words):
        return words
    container = re.fullmatch(r"\s*\w+\s*\((.*)\)\s*", item, flags=re.S)
    if container and len(words) == 1:
        try:
            parts = _split_top_level(container.group(1))
        except LayersSyntaxError:
            return None
        for part in parts:
            found = _missing_comma(part)
            if found:
                return found
    return None


def _looks_like_a_layer(word: str) -> bool:
    """Whether ``word`` is written as a layer is: a name, or a call of a name."""
    try:
        node = ast.parse(word, mode="eval").body
    except SyntaxError:
        return False
    return isinstance(node, ast.Name) or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name))


# Kinds a course's network might end with that the loss already applies (SoftmaxCrossEntropy
# takes logits), so a network must not.
_LOSS_KINDS = ("softmax", "logsoftmax", "log_softmax")


def _parse_node(node: ast.expr, item: str) -> LayerSpec:
    if isinstance(node, ast.Name):
        name, positional, keywords = node.id, [], []
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, positional, keywords = node.func.id, node.args, node.keywords
    else:
        raise LayersSyntaxError(f"{item!r}: expected kind or kind(arguments)")
    kind = name.lower()
    if kind in _LOSS_KINDS:
        raise LayersSyntaxError(f"{item!r}: no {name} layer: the loss (softmax cross-entropy, as torch's "
                                "CrossEntropyLoss) takes the network's logits and applies the softmax itself; end "
                                "the network with its last linear layer")
    if kind not in KINDS:
        raise LayersSyntaxError(f"{item!r}: unknown layer {name!r} (expected one of {', '.join(KINDS)})")
    if KINDS[kind].container:
        if keywords:
            raise LayersSyntaxError(f"{item!r}: {kind} takes layers only, no name=value arguments")
        if not positional:
            raise LayersSyntaxError(f"{item!r}: {kind} needs at least one layer inside, e.g. "
                                    f"{kind}(linear(4, 3), relu)")
        children = [_parse_node(child, ast.get_source_segment(item, child) or item) for child in positional]
        return LayerSpec(kind, {}, tuple(children))
    names = list(KINDS[kind].defaults)
    if len(positional) > len(names):
        raise LayersSyntaxError(f"{item!r}: {kind} takes at most {len(names)} arguments ({', '.join(names)})")
    args = {}
    try:
        for arg_name, value in zip(names, positional):
            args[arg_name] = _literal(value)
        for keyword in keywords:
            if keyword.arg is None:
                raise LayersSyntaxError(f"{item!r}: ** arguments are not allowed")
            if keyword.arg in args:
                # An argument given twice (by position and by name, or by name twice) is an error
                # in Python; letting the last one win would silently build another layer.
                raise LayersSyntaxError(f"{item!r}: {kind}() got multiple values for argument {keyword.arg!r}")
            args[keyword.arg] = _literal(keyword.value)
    except LayersSyntaxError:
        raise
    except (ValueError, TypeError):
        raise LayersSyntaxError(f"{item!r}: argument values must be literals (numbers, tuples, strings, True, "
                                "False, None)") from None
    try:
        return LayerSpec(kind, args)
    except (ValueError, TypeError) as error:
        raise LayersSyntaxError(f"{item!r}: {error}") from None


def _literal(node: ast.expr) -> object:
    """An argument's value: a Python literal, a list read as the tuple it stands for (a stored
    spec holds tuples: LayerSpec.from_json), so that [1, 2] and (1, 2) are one network."""
    value = ast.literal_eval(node)
    return tuple(value) if isinstance(value, list) else value


def parse_layers(text: str) -> LayerSpec:
    """A --layers text as a network (the root Sequential of its layers) that type-checks from
    MNIST-format input to 10 classes.

    Raises LayersSyntaxError naming the layer and the problem.
    """
    if not text.strip():
        raise LayersSyntaxError("--layers: empty; expected e.g. 'linear(784, 64), relu, linear(64, 10)'")
    network = as_network([parse_layer(item) for item in _split_top_level(text)])
    check_stack(network)
    try:
        check_trainable(network)
    except ValueError as error:
        raise LayersSyntaxError(f"--layers: {error}") from None
    return network


# The dropout probability of each layer that has one: torch accepts 1, which zeroes everything.
_DROPOUT_ARGUMENTS = {"dropout": "p", "multiheadattention": "dropout", "transformerencoderlayer": "dropout"}


def check_trainable(network: LayerSpec | Sequence[LayerSpec]) -> None:
    """Refuse a network that cannot learn, however it was made (--layers, new_config, a checkpoint
    about to train on): a dropout probability of 1 (``dropout(1)``, a multiheadattention or
    transformerencoderlayer with ``dropout=1``). torch accepts it; in train mode it zeroes every
    value it passes on, and the network trains to chance without a word. A checkpoint holding one
    still loads and evaluates (in eval mode dropout passes everything). ValueError naming the layer."""
    for path, spec in as_network(network).leaves():
        argument = _DROPOUT_ARGUMENTS.get(spec.kind)
        if argument is not None and spec.args[argument] >= 1:
            raise ValueError(f"layer {path} {_format(spec)}: {argument}={float(spec.args[argument]):g} zeroes every "
                             f"value it passes on in training, so the network cannot learn; give a {argument} below 1")


# Layers that take any shape: the input a network takes is decided by the first layer after them.
_ANY_SHAPE = ("identity", "relu", "sigmoid", "tanh", "leakyrelu", "gelu", "dropout")


def layer_signature(kind: str) -> str:
    """A kind as the grammar takes it, with torch's argument names and defaults in torch's order:
    ``conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, ...)``, ``sigmoid`` for
    a kind without arguments, ``sequential(LAYER, ...)`` for the container."""
    info = KINDS[kind]
    if info.container:
        return f"{kind}(LAYER, ...)"
    args = [name if default is REQUIRED else f"{name}={default!r}" for name, default in info.defaults.items()]
    return f"{kind}({', '.join(args)})" if args else kind


def input_shape(network: LayerSpec | Sequence[LayerSpec]) -> tuple[int, ...]:
    """The per-sample input a network takes: (1, 28, 28) images when its first layer that is not
    an activation or a dropout is a 2-D one (conv, pool, 2-D batch norm), (28, 28) rows of pixels
    (28 time steps of 28) when it is a sequence layer (rnn, lstm, gru, multiheadattention,
    laststep), else 784 flat
    pixels."""
    kinds = [spec.kind for _, spec in as_network(network).leaves() if spec.kind not in _ANY_SHAPE]
    first = kinds[0] if kinds else "linear"
    if first in SEQUENCE_LAYERS:
        return SEQUENCE_SHAPE
    return IMAGE_SHAPE if first in ("conv2d", "maxpool2d", "avgpool2d", "batchnorm2d", "patches") else (PIXELS,)


def image_view(x: np.ndarray, network: LayerSpec | Sequence[LayerSpec]) -> np.ndarray:
    """Rows of 784 pixels (N, 784) as the network's input (a view: no copy): (N, 1, 28, 28)
    images when it starts with a 2-D layer, (N, 28, 28) sequences of rows when it starts with a
    recurrent one, else x as it is."""
    shape = input_shape(network)
    return x if x.shape[1:] == shape else x.reshape(len(x), *shape)


def recurrent_values(spec: LayerSpec, steps: int) -> int:
    """An estimate of the values a recurrent layer keeps per sample over ``steps`` time steps for
    its backward: per stacked layer, (2 G + 3) T H (G gate blocks: the input projection and the
    gates after their nonlinearities, G H each per step; h_t, c_t and tanh(c_t), H each), G = 1
    (rnn), 4 (lstm) or 3 (gru); 0 for any other layer."""
    if spec.kind not in RECURRENT:
        return 0
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[spec.kind]
    return spec.args["num_layers"] * (2 * gates + 3) * steps * spec.args["hidden_size"]


def attention_values(spec: LayerSpec, steps: int) -> int:
    """An estimate of the values a self-attention (or a transformer encoder layer) keeps per sample
    of ``steps`` tokens beyond its output: Q, K, V (3 E per token), the scores and their softmax
    (2 h T per token) and the heads' output and out_proj's (2 E); an encoder layer adds its
    feed-forward hidden values before and after the activation (2 dim_feedforward) and its norms'
    and residuals' (8 E). 0 for any other layer."""
    if spec.kind == "multiheadattention":
        width, heads, extra = spec.args["embed_dim"], spec.args["num_heads"], 0
    elif spec.kind == "transformerencoderlayer":
        width, heads = spec.args["d_model"], spec.args["nhead"]
        extra = 2 * spec.args["dim_feedforward"] + 8 * width
    else:
        return 0
    return steps * (5 * width + 2 * heads * steps + extra)


def evaluation_chunk(network: LayerSpec | Sequence[LayerSpec], itemsize: int, budget: int = 256 * 2**20,
                     largest: int = 10_000) -> int:
    """How many samples to evaluate at once so that one chunk's activations stay near ``budget``
    bytes: budget / (itemsize * (every layer's output + each convolution's im2col matrix,
    C_in kH kW H_out W_out, + each recurrent layer's per-step values, recurrent_values, + each
    attention's, attention_values)) per sample, between 64 and ``largest``.

    LeNet in float32 needs ~0.2 MB a sample (conv1's im2col alone 78 KB), so ~1,300 per chunk;
    the lstm preset (hidden 128, 28 steps) ~0.17 MB, so ~1,600; the vit preset ~0.16 MB, so
    ~1,500; the default MLP ~1.6 KB, so ``largest``.
    """
    values = 0
    for _, spec, shape, out in leaf_shapes(network, (1, *input_shape(network))):
        values += int(np.prod(out))
        if spec.kind == "conv2d":
            kernel = pair(spec.args["kernel_size"])
            values += spec.args["in_channels"] * kernel[0] * kernel[1] * int(np.prod(out[2:]))  # im2col
        elif spec.kind in RECURRENT:
            steps = shape[1] if spec.args["batch_first"] else shape[0]
            values += recurrent_values(spec, steps)
        elif spec.kind in ("multiheadattention", "transformerencoderlayer"):
            values += attention_values(spec, shape[1] if spec.args["batch_first"] else shape[0])
    return int(min(largest, max(64, budget // (itemsize * max(values, 1)))))


def _check_batch_first(network: LayerSpec) -> None:
    """Every sequence layer must read the batch-major (batch, seq_len, features) the trainer feeds
    (no layer of the catalog moves the batch axis, so every 3-D tensor in the network is batch-major
    too): batch_first=True on each, else LayersSyntaxError naming it and the layer that feeds it.
    Without it, a layer would take the batch for time and time for the batch, and still
    type-check wherever batch and sequence have the same length."""
    feeding: tuple[str, LayerSpec] | None = None  # the last sequence layer before this one
    first = True  # no layer that changes the shape ran before this one: it reads the images
    for path, spec in network.leaves():
        if spec.kind not in SEQUENCE_LAYERS:
            first = first and spec.kind in _ANY_SHAPE
            continue
        if not spec.args["batch_first"]:
            if feeding is None:
                why = ("the trainer feeds each image as (batch, 28 rows, 28 pixels)" if first else
                       "its input is batch first (no layer moves the batch axis)")
                raise LayersSyntaxError(f"--layers: layer {path} {_format(spec)}: {why}; give it batch_first=True")
            source_path, source = feeding
            raise LayersSyntaxError(
                f"--layers: layer {path} {_format(spec)} reads the output of layer {source_path} {_format(source)}, "
                "which is batch first (batch, seq_len, features); give it batch_first=True as well")
        feeding = (path, spec)


def check_stack(network: LayerSpec | Sequence[LayerSpec]) -> None:
    """The network must type-check from input_shape(network) and end in (batch, 10) logits; the
    message names the layer that does not fit by its path (``layer 3 Linear(...)``). Sequence
    layers (rnn, lstm, gru, multiheadattention, laststep) must take batch_first=True: the trainer
    feeds (batch, 28, 28). An embedding, which looks up integer indices, has no place in a network
    fed pixels."""
    for path, spec in as_network(network).leaves():
        if spec.kind == "embedding":
            raise LayersSyntaxError(f"--layers: layer {path} {_format(spec)}: an embedding looks up integer indices "
                                    "(tokens), and the trainer feeds pixel values; it is a library layer only")
    _check_batch_first(as_network(network))
    shape: tuple[int, ...] = (2, *input_shape(network))
    for path, spec in as_network(network).leaves():
        try:
            shape = output_shape(spec, shape)
        except ValueError as error:
            raise LayersSyntaxError(f"--layers: layer {path} {error}") from None
    if shape != (2, CLASSES):
        hint = ""
        if len(shape) == 3 and any(spec.kind in RECURRENT for _, spec in as_network(network).leaves()):
            hint = " (a recurrent layer outputs every time step: add laststep(batch_first=True) after it to " \
                   "classify by the last one)"
        raise LayersSyntaxError(
            f"--layers: the last layer outputs {shape[1:]} per sample; expected {CLASSES} logits{hint}")


def _format(spec: LayerSpec) -> str:
    """One layer as parse_layer reads it back: the required arguments by position, the others by
    name where they differ from the default (given_args: None for 0.1, (0, 0) for 0 and 1 for
    1.0 differ too, so the text gives back the very spec)."""
    if spec.info.container:
        return f"{spec.kind}({', '.join(_format(child) for child in spec.children)})"
    defaults = KINDS[spec.kind].defaults
    shown = [repr(v) if defaults[k] is REQUIRED else f"{k}={v!r}" for k, v in given_args(spec).items()]
    return f"{spec.kind}({', '.join(shown)})" if shown else spec.kind


def format_layers(network: LayerSpec | Sequence[LayerSpec]) -> str:
    """The text syntax for a network (its root's children), arguments that differ from the
    defaults only (parse_layers' inverse)."""
    return ", ".join(_format(spec) for spec in as_network(network).children)


def describe_network(network: LayerSpec) -> str:
    """``784-256-128-10 relu`` for an MLP (``784-10, no hidden layer`` without hidden layers),
    ``layers <the --layers text>`` for any other network."""
    found = mlp_of(network)
    if found is None:
        return f"layers {format_layers(network)}"
    sizes, activation = found
    widths = "-".join(map(str, sizes))
    return f"{widths} {activation}" if len(sizes) > 2 else f"{widths}, no hidden layer"


LENET = parse_layers(LENET_TEXT)
LSTM_NETWORK = parse_layers(LSTM_TEXT)
GRU_NETWORK = parse_layers(GRU_TEXT)
VIT_NETWORK = parse_layers(VIT_TEXT)
