"""Layer specifications (engine_core/specs.py): initial states by torch's rules, dropout seeds of
composite layers."""

from __future__ import annotations

import numpy as np

import numpy_net
from backprop.architecture import VIT_NETWORK
from engine_core.specs import LayerSpec, build, state_shapes


def test_initial_state_is_torchs_rule_zero_biases_and_xavier_in_projection():
    spec = LayerSpec("multiheadattention", {"embed_dim": 8, "num_heads": 2})
    net = build(numpy_net, [spec], "float64", seed=3)
    state = net.state_dict()
    assert list(state) == list(state_shapes([spec])) == ["0.in_proj_weight", "0.in_proj_bias", "0.out_proj.weight",
                                                         "0.out_proj.bias"]
    assert not state["0.in_proj_bias"].any() and not state["0.out_proj.bias"].any()
    bound = np.sqrt(6 / (8 + 24))  # xavier_uniform on (3E, E)
    assert np.abs(state["0.in_proj_weight"]).max() <= bound
    assert np.abs(state["0.out_proj.weight"]).max() <= 1 / np.sqrt(8)  # a Linear's U(+-1/sqrt(fan_in))
    # weights.png draws the first layer's Q, K and V blocks
    from backprop import pictures

    images, titles, key = pictures.weight_images(state)
    assert key == "0.in_proj_weight" and titles == ["Q", "K", "V"] and images.shape == (3, 8, 8)
    np.testing.assert_array_equal(images[1], state["0.in_proj_weight"][8:16])


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
