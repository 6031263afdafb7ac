"""GPTConfig: presets, derived sizes, and clear rejection of configs that cannot work."""
import pytest

from microgpt_lib import PRESETS, ConfigError, GPTConfig


def test_karpathy_preset_has_4192_parameters():
    cfg = GPTConfig.preset("e16_L1_b16", vocab_size=27)
    assert (cfg.n_embd, cfg.n_head, cfg.n_layer, cfg.block_size) == (16, 4, 1, 16)
    assert cfg.num_params == 4192
    assert cfg.head_dim == 4
    assert cfg.name == "e16_L1_b16"


@pytest.mark.parametrize("name", ["e16_L1_b16", "e16_L1_b8", "e64_L2_b16", "e128_L4_b32"])
def test_required_presets_exist_and_match_their_names(name):
    assert name in PRESETS
    assert GPTConfig.preset(name).name == name


def test_param_shapes_follow_model_md_order():
    names = list(GPTConfig(n_layer=2).param_shapes())
    assert names[:3] == ["wte", "wpe", "lm_head"]
    assert names[3:9] == [f"layer0.{m}" for m in
                          ("attn_wq", "attn_wk", "attn_wv", "attn_wo", "mlp_fc1", "mlp_fc2")]


@pytest.mark.parametrize("kwargs, message", [
    ({"n_embd": 10, "n_head": 4}, "divisible by n_head"),
    ({"n_embd": 0}, "n_embd must be a positive integer"),
    ({"n_layer": -1}, "n_layer must be a positive integer"),
    ({"block_size": 2.5}, "block_size must be a positive integer"),
    ({"vocab_size": True}, "vocab_size must be a positive integer"),
])
def test_invalid_config_is_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**kwargs)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="e16_L1_b16"):
        GPTConfig.preset("gpt2")
