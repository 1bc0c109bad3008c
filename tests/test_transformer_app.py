"""The application side of the vision transformer: the vit preset's network, a ViT-shaped network
trained with its dropouts in one engine and resumed in another (the masks' generators of every
part saved by path), evaluated alike by every engine, exported as torch's own
nn.TransformerEncoderLayer (printed code that rebuilds it, with the small classes torch lacks)
and imported back; and the oracle's encoder layer against torch's. The layers' math is the parity
harness's (parity_tests: the catalog, the masks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backprop.architecture import VIT_NETWORK, LayersSyntaxError, check_stack, input_shape, parse_layers
from backprop.checkpoint import load_checkpoint
from backprop.config import PRESETS
from engine_core.specs import LayerSpec, build, paths_of, state_shapes
from torch_net import autograd

from .helpers import (
    accuracy_of,
    assert_imports_back,
    assert_torch_predicts_as_the_engine,
    cli_out,
    train_and_export,
)

# The vit preset's shape, small: 16 patches of 7x7 to 8 features, one pre-LN layer with dropout.
TINY = ("patches(7), linear(49, 8), positionalembedding(16, 8, batch_first=True), "
        "transformerencoderlayer(8, 2, 16, 0.25, 'gelu', batch_first=True, norm_first=True, seed=3), "
        "layernorm(8), sequencemean(batch_first=True), linear(8, 10)")


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


def test_a_vit_run_resumed_in_another_engine_is_the_uninterrupted_run(data_root, tmp_path, capsys):
    """Its four dropouts per encoder layer draw masks from generators a checkpoint keeps by path
    (``3.self_attn.attn_dropout``, ``3.dropout1``, ...): resumed by another engine, the run goes
    on with the very masks the uninterrupted one drew."""
    assert paths_of(parse_layers(TINY), "dropout") == ["3.self_attn.attn_dropout", "3.dropout", "3.dropout1",
                                                       "3.dropout2"]
    common = ["--preset", "vit", "--layers", TINY, "--dataset", "fashion-mnist", "--data-dir", data_root, "--limit",
              "48", "--batch-size", "16", "--dtype", "float64", "--lr-schedule", "constant", "--quiet"]
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    cli_out(capsys, "train", *common, "--epochs", "2", "--engine", "numpy", "--out", straight)
    cli_out(capsys, "train", *common, "--epochs", "1", "--engine", "torch", "--out", resumed)
    cli_out(capsys, "train", "--resume", resumed, "--epochs", "2", "--quiet", "--engine", "autograd")
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert (a.config.optimizer, a.config.clip_grad_norm) == ("adamw", 1.0)
    for key, value in a.params.items():
        np.testing.assert_allclose(b.params[key], value, rtol=1e-10, atol=1e-12, err_msg=key)
    accuracies = {engine: accuracy_of(cli_out(capsys, "evaluate", straight, "--engine", engine, "--out",
                                              str(tmp_path)))
                  for engine in ("numpy", "torch", "autograd")}
    assert len(set(accuracies.values())) == 1, accuracies


def test_a_vit_goes_to_torch_as_its_own_encoder_layer_and_comes_back(data_root, tmp_path, capsys):
    checkpoint, model, code = train_and_export(capsys, TINY, data_root, tmp_path)
    assert "nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.25, activation='gelu', " \
           "batch_first=True, norm_first=True)" in code
    for name in ("Patches", "PositionalEmbedding", "SequenceMean"):
        assert f"class {name}(nn.Module):" in code
    namespace: dict = {}
    exec(code, namespace)
    module = namespace["model"].eval()
    saved = torch.load(model, weights_only=True)
    np.testing.assert_array_equal(saved["3.linear1.weight"].numpy(), checkpoint.params["3.linear1.weight"].T)
    np.testing.assert_array_equal(saved["3.self_attn.in_proj_weight"].numpy(),
                                  checkpoint.params["3.self_attn.in_proj_weight"])
    assert_torch_predicts_as_the_engine(module, checkpoint)
    assert_imports_back(capsys, model, TINY, data_root, tmp_path, checkpoint)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_the_oracles_encoder_layer_is_torchs(norm_first, activation):
    """Without dropout, the oracle's encoder layer (torch's modules, the engines' dropout masks, its
    own forward for the masks' rule) is torch.nn.TransformerEncoderLayer in train mode: same
    output and gradients for the same state, with a causal mask and padding."""
    spec = LayerSpec("transformerencoderlayer", {"d_model": 6, "nhead": 2, "dim_feedforward": 5, "dropout": 0.0,
                                                 "activation": activation, "batch_first": True,
                                                 "norm_first": norm_first})
    ours = build(autograd, [spec], "float64", seed=1).layers[0].module
    theirs = torch.nn.TransformerEncoderLayer(6, 2, 5, 0.0, activation, batch_first=True, norm_first=norm_first,
                                              dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    causal = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    padding = torch.tensor([[False, False, False, True]] * 3)
    results = []
    for module in (ours, theirs):
        t = x.clone().requires_grad_(True)
        y = module(t, src_mask=causal, src_key_padding_mask=padding.to(torch.float64) * -1e9)
        y.sum().backward()
        results.append((y.detach(), t.grad, {k: p.grad for k, p in module.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-12)
    for key, grad in results[1][2].items():
        torch.testing.assert_close(results[0][2][key], grad, rtol=1e-12, atol=1e-12, msg=key)


def test_the_oracles_dropped_attention_is_torchs_formula():
    """The oracle's attention written in torch operations (used where its weights are dropped with
    the engines' masks) is torch's own nn.MultiheadAttention when nothing is dropped."""
    layer = autograd.MultiheadAttention(6, 3, dropout=0.5, batch_first=True, dtype="float64").module
    x = torch.randn(2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mask = torch.randn(6, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    saved, layer.attn_dropout = layer.attn_dropout, None
    try:
        ours = layer.dropped_forward(x, mask)
    finally:
        layer.attn_dropout = saved
    theirs = torch.nn.MultiheadAttention.forward(layer, x, x, x, attn_mask=mask, need_weights=False)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("engine", ["numpy_net", "torch_net"])
def test_without_dropout_train_and_eval_mode_give_the_same_encoder_layer(engine):
    """dropout=0.0: no mask is drawn, so train() and eval() compute the same output and dL/dx (torch's
    own eval fast path is not the reference; the oracle's forward is its documented formula)."""
    import importlib

    module = importlib.import_module(engine)
    spec = LayerSpec("transformerencoderlayer", {"d_model": 6, "nhead": 3, "dim_feedforward": 7, "dropout": 0.0,
                                                 "batch_first": True})
    net = build(module, [spec], "float64", seed=2)
    x = module.asarray(np.random.default_rng(0).standard_normal((2, 4, 6)), "float64")
    delta = module.asarray(np.random.default_rng(1).standard_normal((2, 4, 6)), "float64")
    results = []
    for training in (True, False):
        net.train(training)
        out = np.array(module.to_numpy(net.forward(x)))
        results.append((out, np.array(module.to_numpy(net.backward(delta)))))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert paths_of([spec], "dropout") == ["0.dropout", "0.dropout1", "0.dropout2"]  # no attn_dropout at p = 0


def test_encoder_layers_of_different_seeds_never_share_a_dropout_generator():
    """4 seed + 0..3: layer 0's dropout2 and layer 1's dropout1 had the same seed (2) with seed +
    0..3, and drew the same masks; the vit preset gives its two layers seeds 0 and 1."""
    seeds = {seed: [spec.args["seed"] for path, spec in
                    LayerSpec("transformerencoderlayer", {"d_model": 4, "nhead": 2, "dropout": 0.1,
                                                          "seed": seed}).walk() if spec.kind in ("dropout",)]
             for seed in range(4)}
    drawn = [s for values in seeds.values() for s in values]
    assert len(drawn) == len(set(drawn)) == 16  # four dropouts a layer, attn_dropout included
    assert [spec.args["seed"] for _, spec in VIT_NETWORK.walk() if spec.kind == "transformerencoderlayer"] == [0, 1]


@pytest.mark.parametrize("engine", ["numpy_net", "torch_net", "torch_net.autograd"])
def test_a_float_mask_is_judged_in_the_layers_dtype(engine):
    """-1e39 is finite in float64 but -inf in float32: a key padding row of it masks every key of a
    float32 layer, which is refused as a fully masked row (not NaN); +inf in a mask is refused in
    every dtype (its softmax would be NaN, as torch gives)."""
    import importlib

    module = importlib.import_module(engine)
    padding = np.array([[0.0, 0.0, 0.0], [-1e39, -1e39, -1e39]])
    for dtype in ("float32", "float64"):
        layer = build(module, [LayerSpec("multiheadattention", {"embed_dim": 4, "num_heads": 2,
                                                                 "batch_first": True})], dtype).layers[0]
        x = np.random.default_rng(0).standard_normal((2, 3, 4))
        forward = layer.module if engine.endswith("autograd") else layer.forward
        as_array = (lambda a, d: torch.from_numpy(a.astype(d))) if engine.endswith("autograd") else module.asarray
        mask = as_array(padding, "float64")
        if dtype == "float32":
            with pytest.raises(ValueError, match=r"every key of query 0 \(batch 1, head 0\) is masked"):
                forward(as_array(x, dtype), key_padding_mask=mask)
        else:
            forward(as_array(x, dtype), key_padding_mask=mask)  # -1e39 is a finite score in float64
        with pytest.raises(ValueError, match=r"a mask adds \+inf to a score"):
            forward(as_array(x, dtype), attn_mask=as_array(np.full((3, 3), np.inf), "float64"))


@pytest.mark.parametrize("engine", ["numpy_net", "torch_net"])
def test_a_shorter_sequence_leaves_no_gradient_on_the_positions_it_did_not_reach(engine):
    """backward replaces the gradient: after a sequence of 5 steps, one of 2 gives the positions 2-4
    exactly 0 (a backward that only writes the first T rows keeps the longer call's there)."""
    import importlib

    module = importlib.import_module(engine)
    layer = module.PositionalEmbedding(5, 3, batch_first=True, dtype="float64")
    rng = np.random.default_rng(0)
    for steps in (5, 2):
        layer.forward(module.asarray(rng.standard_normal((2, steps, 3)), "float64"))
        layer.backward(module.asarray(rng.standard_normal((2, steps, 3)), "float64"))
    grad = np.asarray(module.to_numpy(layer.grad_weight))
    assert not grad[2:].any() and grad[:2].all()
