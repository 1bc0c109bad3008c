"""Networks as the application sees them (backprop/architecture.py): the --layers text and its checks,
the presets' trees, the input a network reads (rows, patches, images) and evaluation chunks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backprop.architecture import (
    LENET,
    LSTM_NETWORK,
    VIT_NETWORK,
    LayersSyntaxError,
    check_stack,
    evaluation_chunk,
    format_layers,
    image_view,
    input_shape,
    parse_layers,
)
from backprop.config import PRESETS
from backprop.export import torch_module
from engine_core.specs import LayerSpec, mlp, sequential, state_shapes
from tests.helpers import run_cli
from tests.networks import RECURRENT_STACKS, TINY_ATTENTION, TINY_LSTM


def test_an_attention_network_reads_rows_and_needs_batch_first():
    assert input_shape(parse_layers(TINY_ATTENTION)) == (28, 28)
    with pytest.raises(LayersSyntaxError, match=r"layer 0 multiheadattention\(28, 4\): the trainer feeds each "
                                                r"image as \(batch, 28 rows, 28 pixels\); give it batch_first=True"):
        parse_layers("multiheadattention(28, 4), laststep, linear(28, 10)")
    with pytest.raises(LayersSyntaxError, match=r"num_heads: must divide embed_dim, got embed_dim=28, num_heads=3"):
        parse_layers("multiheadattention(28, 3, batch_first=True), laststep(batch_first=True), linear(28, 10)")


def test_an_embedding_is_refused_in_a_network_fed_pixels():
    with pytest.raises(LayersSyntaxError, match=r"layer 0 embedding\(10, 4\): an embedding looks up integer "
                                                r"indices \(tokens\), and the trainer feeds pixel values"):
        parse_layers("embedding(10, 4), flatten, linear(3136, 10)")


def test_the_vit_preset_reads_images_as_16_patches_and_trains_with_adamw_and_clipping():
    check_stack(VIT_NETWORK)
    assert input_shape(VIT_NETWORK) == (1, 28, 28)
    preset = PRESETS["vit"]
    assert (preset["optimizer"], preset["clip_grad_norm"], preset["epochs"]) == ("adamw", 1.0, 10)
    keys = list(state_shapes(VIT_NETWORK))
    assert keys[:6] == ["1.weight", "1.bias", "2.weight", "3.self_attn.in_proj_weight", "3.self_attn.in_proj_bias",
                        "3.self_attn.out_proj.weight"]
    assert state_shapes(VIT_NETWORK)["3.self_attn.in_proj_weight"] == (192, 64)  # torch's (3E, E)
    assert state_shapes(VIT_NETWORK)["3.linear1.weight"] == (64, 128)  # a Linear: (in, out) here


def test_an_encoder_layer_needs_batch_first_and_a_head_count_dividing_d_model():
    with pytest.raises(LayersSyntaxError, match=r"layer 3 transformerencoderlayer\(8, 2\) reads the output of layer 2 "
                                                r"positionalembedding\(16, 8, batch_first=True\)"):
        parse_layers("patches(7), linear(49, 8), positionalembedding(16, 8, batch_first=True), "
                     "transformerencoderlayer(8, 2), sequencemean(batch_first=True), linear(8, 10)")
    with pytest.raises(LayersSyntaxError, match=r"num_heads: must divide embed_dim, got embed_dim=8, num_heads=3"):
        parse_layers("patches(7), linear(49, 8), transformerencoderlayer(8, 3, batch_first=True), "
                     "sequencemean(batch_first=True), linear(8, 10)")
    with pytest.raises(LayersSyntaxError, match=r"activation: expected one of 'relu', 'gelu', got 'tanh'"):
        parse_layers("patches(7), linear(49, 8), transformerencoderlayer(8, 2, activation='tanh', batch_first=True), "
                     "sequencemean(batch_first=True), linear(8, 10)")
    with pytest.raises(LayersSyntaxError, match=r"multiples of patch_size 5"):
        parse_layers("patches(5), linear(25, 10)")


def test_images_are_views_and_evaluation_chunks_bound_memory():
    x = np.zeros((5, 784), np.float32)
    images = image_view(x, LENET)
    assert images.shape == (5, 1, 28, 28) and np.shares_memory(images, x)
    flat = image_view(x, mlp([784, 256, 128, 10], "relu"))
    assert flat.shape == x.shape and np.shares_memory(flat, x)  # an MLP takes the rows as they are
    chunk = evaluation_chunk(LENET, 4)
    # ~0.2 MB a sample in float32 (conv1's im2col alone 78 KB): a 256 MB budget is ~1,300 samples.
    assert 500 <= chunk <= 2_000
    assert evaluation_chunk(mlp([784, 256, 128, 10], "relu"), 4) == 10_000


# -- the --layers grammar: torch's every argument ---------------------------------------------
@pytest.mark.parametrize("item, expected", [
    ('conv2d(1, 6, 5, padding="same", dilation=2, groups=1)', dict(padding="same", dilation=2, groups=1)),
    ("conv2d(4, 8, (3, 1), stride=[2, 1], padding=(1, 0), groups=4, bias=False, padding_mode='zeros')",
     dict(kernel_size=(3, 1), stride=(2, 1), padding=(1, 0), groups=4, bias=False)),
    ("conv2d(1, 6, 5, padding='valid')", dict(padding="valid")),
    ("maxpool2d(3, 2, padding=1, ceil_mode=True)", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("maxpool2d(3, dilation=2, return_indices=False)", dict(dilation=2, stride=None)),
    ("avgpool2d(2, count_include_pad=False, divisor_override=3)", dict(count_include_pad=False, divisor_override=3)),
    ("avgpool2d(3, 2, 1, True, False, None)", dict(padding=1, ceil_mode=True, count_include_pad=False)),
    ("flatten(1, -1)", dict(start_dim=1, end_dim=-1)),
    ("flatten(start_dim=2)", dict(start_dim=2, end_dim=-1)),
    ("batchnorm1d(8, affine=False, track_running_stats=False, momentum=None)",
     dict(affine=False, track_running_stats=False, momentum=None)),
    ("batchnorm2d(8, 1e-3, None, False)", dict(eps=1e-3, momentum=None, affine=False)),
    ("relu(inplace=True)", dict(inplace=True)),
    ("leakyrelu(0.1, True)", dict(negative_slope=0.1, inplace=True)),
    ("dropout(0.2, True)", dict(p=0.2, inplace=True, seed=0)),
    ("GELU('tanh')", dict(approximate="tanh")),
])
def test_the_layers_text_takes_every_torch_argument_and_gives_it_back(item, expected):
    from backprop.architecture import parse_layer

    spec = parse_layer(item)
    assert {name: spec.args[name] for name in expected} == expected
    assert parse_layer(format_layers([spec])) == spec
    assert not any(isinstance(value, list) for value in spec.args.values())  # [2, 1] is read as (2, 1),
    assert LayerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec  # as a stored spec is


def test_a_trailing_comma_is_accepted_at_the_top_level_as_inside_sequential():
    plain = parse_layers("flatten, sequential(linear(784, 16), relu), linear(16, 10)")
    assert parse_layers("flatten, sequential(linear(784, 16), relu,), linear(16, 10),") == plain
    assert parse_layers("flatten , sequential(linear(784, 16), relu , ) , linear(16, 10) , ") == plain
    # a comma, a bracket or a parenthesis inside a string is no separator
    with pytest.raises(ValueError, match=r"'conv2d\(1, 6, 5, padding=\"\(,\]\"\)': conv2d: padding: invalid "):
        parse_layers('conv2d(1, 6, 5, padding="(,]"), flatten, linear(3456, 10)')


def test_a_stack_starting_with_activations_or_dropout_takes_what_the_next_layer_takes():
    from backprop.architecture import input_shape

    assert input_shape(parse_layers("dropout(0.1), relu, conv2d(1, 2, 3), flatten, linear(1352, 10)")) == (1, 28, 28)
    assert input_shape(parse_layers("relu, sequential(batchnorm2d(1)), flatten, linear(784, 10)")) == (1, 28, 28)
    assert input_shape(parse_layers("dropout(0.1), linear(784, 10)")) == (784,)


@given(data=st.data())
def test_every_spec_the_catalog_draws_round_trips_through_the_text_and_the_printed_torch_code(data):
    """The harness's strategies draw every argument of every kind (parity_tests/catalog.py): the
    --layers text of a drawn layer parses back to it, and the torch code export prints for it
    builds the module export builds."""
    from torch import nn

    from backprop.architecture import parse_layer
    from backprop.export import torch_namespace, torch_spelling
    from parity_tests.catalog import CATALOG

    entry = CATALOG[data.draw(st.sampled_from(sorted(CATALOG)), label="kind")]
    spec, _ = entry.draw(data.draw)
    assert parse_layer(format_layers([spec])) == spec
    printed = eval(torch_spelling(spec), torch_namespace())  # our own printed code (nn, and the classes it defines)
    built = torch_module(sequential(spec))[0]

    def settings_of(module: nn.Module) -> dict:
        return {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}

    assert type(printed) is type(built) and settings_of(printed) == settings_of(built)


@pytest.mark.parametrize(("text", "message"), [
    ("conv2d(1, 1, 27), maxpool2d(2, stride=1, padding=1, dilation=3), flatten, linear(1, 10)",
     "layer 1 MaxPool2d(kernel_size=2, stride=1, padding=1, dilation=3, return_indices=False, ceil_mode=False): "
     "x: a window over the input's 2x2 pixels would hold only padding"),
    ("conv2d(1, 4, 3, padding=9223372036854775807), flatten, linear(10, 10)",
     "layer 2 Linear(in_features=10, out_features=10, bias=True): expects input (*, 10), got (2, "
     "1361129467683753857395273291879306758400)"),
])
def test_layers_that_could_only_fail_at_the_first_step_are_refused_when_parsed(text, message):
    """A max-pooling window of padding only (it has no pixel to take the maximum of) and sizes past
    int64 are --layers errors naming the layer, not a traceback at the first step or an overflow."""
    with pytest.raises(LayersSyntaxError) as info:
        parse_layers(text)
    assert message in str(info.value)


# -- the network's input and its checks --------------------------------------------------------
def test_a_network_starting_with_a_recurrent_layer_reads_each_image_as_28_rows_of_28_pixels():
    for text in (TINY_LSTM, *RECURRENT_STACKS, "dropout(0.1), " + TINY_LSTM):
        assert input_shape(parse_layers(text)) == (28, 28), text
    x = np.arange(3 * 784, dtype=np.float32).reshape(3, 784)
    rows = image_view(x, LSTM_NETWORK)
    assert rows.shape == (3, 28, 28) and np.shares_memory(rows, x)  # a view: no copy
    np.testing.assert_array_equal(rows[1, 2], x[1, 56:84])  # time step 2 of image 1 is its third row
    # Evaluation chunks count each recurrent layer's per-step values: (2 G + 3) T H a layer.
    preset = evaluation_chunk(LSTM_NETWORK, 4)
    assert 1_000 <= preset <= 2_500  # ~0.16 MB a sample in float32
    assert evaluation_chunk(parse_layers(TINY_LSTM), 4) == 10_000  # tiny: every test image at once
    deeper = parse_layers("lstm(28, 128, num_layers=2, batch_first=True), laststep(batch_first=True), "
                          "linear(128, 10)")
    assert evaluation_chunk(deeper, 4) < preset and evaluation_chunk(LSTM_NETWORK, 8) < preset


@pytest.mark.parametrize("text, message", [
    ("lstm(28, 4), laststep(batch_first=True), linear(4, 10)",
     "layer 0 lstm(28, 4): the trainer feeds each image as (batch, 28 rows, 28 pixels); give it batch_first=True"),
    ("relu, gru(28, 4), laststep(batch_first=True), linear(4, 10)",
     "layer 1 gru(28, 4): the trainer feeds each image as"),
    ("lstm(28, 4, batch_first=True), laststep, linear(4, 10)",
     "layer 1 laststep reads the output of layer 0 lstm(28, 4, batch_first=True), which is batch first "
     "(batch, seq_len, features); give it batch_first=True as well"),
    ("sequential(rnn(28, 4, batch_first=True), rnn(4, 4)), laststep(batch_first=True), linear(4, 10)",
     "layer 0.1 rnn(4, 4) reads the output of layer 0.0 rnn(28, 4, batch_first=True)"),
    ("conv2d(1, 2, 3), flatten(2), lstm(676, 4), laststep(batch_first=True), linear(4, 10)",
     "layer 2 lstm(676, 4): its input is batch first (no layer moves the batch axis); give it batch_first=True"),
    ("lstm(28, 4, batch_first=True), linear(4, 10)",
     "the last layer outputs (28, 10) per sample; expected 10 logits (a recurrent layer outputs every time step: "
     "add laststep(batch_first=True)"),
    ("lstm(27, 4, batch_first=True), laststep(batch_first=True), linear(4, 10)",
     "expects a 3-D input (batch, seq_len, 27), got (2, 28, 28)"),
])
def test_sequence_layers_that_would_read_the_batch_as_time_are_refused_naming_them(text, message):
    with pytest.raises(LayersSyntaxError) as error:
        parse_layers(text)
    assert message in str(error.value)


@pytest.mark.parametrize("layers, facts", [
    ("linear(784,16) relu, linear(16,10)", ["a comma is missing between 'linear(784,16)' and 'relu'"]),
    # Before a kind the network refuses, and inside a container: the comma is what is named first.
    ("linear(784, 10) softmax", ["a comma is missing between 'linear(784, 10)' and 'softmax'"]),
    ("flatten, sequential(linear(784,16), relu linear(16,10))", ["a comma is missing between 'relu' and 'linear"]),
    ("linear(784,16), relu, linear(16,10), softmax", ["no softmax layer", "applies the softmax itself"]),
    ("linear(784,16), relu, linear(16,10), LogSoftmax(1)", ["no LogSoftmax layer", "logits"]),
    ("linear(784,16), dropout(1), linear(16,10)", ["p=1 zeroes every value", "below 1"]),
    ("multiheadattention(28, 4, dropout=1.0, batch_first=True), laststep(batch_first=True), linear(28, 10)",
     ["layer 0 multiheadattention", "dropout=1 zeroes every value", "below 1"]),
    ("linear(784,16), relu, sequential(linear(16,16), dropout(p=1.0)), linear(16,10)", ["p=1"]),  # nested too
])
def test_layers_slips_get_messages_that_name_the_slip(layers, facts):
    result = run_cli("train", "--layers", layers, "--quiet")
    assert result.returncode == 2, result.stdout
    for fact in facts:
        assert fact in result.stderr, result.stderr


def test_a_trailing_comma_in_layers_is_accepted_as_python_accepts_it():
    from backprop.architecture import parse_layers

    assert parse_layers("linear(784, 10),") == parse_layers("linear(784, 10)")
