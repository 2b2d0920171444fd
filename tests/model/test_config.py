"""Configuration: bad model options give one-line ConfigErrors; every model choice composes in Hydra."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from midiformer.common import ConfigError
from midiformer.model import HEADS, INITS, NORMS, POSITIONS, MidiGPT, validate_model_config
from tests.conftest import CONF_DIR
from tests.model.conftest import tiny_config

BAD_OPTIONS = [
    ("d_model", 0), ("n_layer", -1), ("n_head", 0), ("max_seq_len", 0), ("d_model", 2.5),
    ("n_head", 3), ("dropout", 1.0), ("dropout", -0.1), ("pos", "alibi"), ("heads", "serial"),
    ("norm_position", "sandwich"), ("embedding_init", "zeros"), ("norm.name", "batchnorm"),
    ("init.name", "orthogonal"), ("norm.epsilon", 1e-5), ("init.std", 0.02),
]


@pytest.mark.parametrize("key, value", BAD_OPTIONS)
def test_a_bad_option_is_one_line_naming_it(key, value):
    cfg = tiny_config(**{key: value})
    with pytest.raises(ConfigError) as error:
        validate_model_config(cfg)
    message = str(error.value)
    assert "\n" not in message
    assert f"model.{key.split('.')[0]}" in message, message
    with pytest.raises(ConfigError):
        MidiGPT(cfg)


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_validation_draws_nothing_from_the_global_generator(pos):
    """Validating a config must not change the weights a seeded run starts from."""
    import torch

    torch.manual_seed(0)
    validate_model_config(tiny_config(pos=pos))
    after_validation = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after_validation, torch.rand(3))


def test_rope_needs_an_even_head_size():
    with pytest.raises(ConfigError, match="model.pos=rope"):
        validate_model_config(tiny_config(d_model=30, n_head=2, pos="rope"))


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_the_presets_are_valid(preset):
    cfg = OmegaConf.merge(tiny_config(), OmegaConf.load(CONF_DIR / "model" / f"{preset}.yaml"))
    cfg.ticks_per_beat = 96  # ${data.codec.ticks_per_beat} in the apps
    validate_model_config(cfg)


# --- Hydra composition: a missing group or choice is a failure, not a skip --------------------------

def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
@pytest.mark.parametrize("norm", NORMS.names())
def test_every_model_and_norm_composes(preset, norm):
    cfg = compose_train(f"model={preset}", f"model/norm={norm}")
    assert cfg.model.norm.name == norm
    validate_model_config(cfg.model)


@pytest.mark.parametrize("init", INITS.names())
@pytest.mark.parametrize("option", ["model/pos=rope", "model/heads=cascade", "model.norm_position=post",
                                    "model.embedding_init=scaled", "model.dropout=0.0"])
def test_every_init_and_option_composes_and_builds(init, option):
    cfg = compose_train("model=tiny", f"model/init={init}", option)
    assert cfg.model.init.name == init
    MidiGPT(cfg.model)


def test_tfixup_turns_off_norms_and_warmup():
    cfg = compose_train("model=tiny", "model/init=tfixup")
    assert cfg.model.norm.name == "none" and cfg.model.init.name == "tfixup"
    assert cfg.optim.warmup_steps == 0, "conf/config.yaml must list model/init after optim"


def test_tfixup_defaults_can_be_overridden_on_the_command_line():
    cfg = compose_train("model=tiny", "model/init=tfixup", "model/norm=layernorm", "optim.warmup_steps=5")
    assert cfg.model.norm.name == "layernorm" and cfg.optim.warmup_steps == 5


@pytest.mark.parametrize("group, registry", [("model/pos", POSITIONS), ("model/heads", HEADS),
                                             ("model/norm", NORMS), ("model/init", INITS)])
def test_each_model_group_has_one_yaml_per_registered_choice(group, registry):
    assert sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")) == registry.names()
    for choice in registry.names():
        cfg = compose_train("model=tiny", f"{group}={choice}")
        assert OmegaConf.select(cfg, group.replace("/", ".") + ".name") == choice
        MidiGPT(cfg.model)


def test_a_position_or_head_by_bare_name_on_the_command_line_builds_the_same_model():
    by_group = MidiGPT(compose_train("model=tiny", "model/pos=rope", "model/heads=cascade").model)
    by_name = MidiGPT(compose_train("model=tiny", "model.pos=rope", "model.heads=cascade").model)
    assert by_group.state_dict().keys() == by_name.state_dict().keys()
    assert not any(k.startswith("pos_embed") for k in by_name.state_dict())  # rope saves nothing


@pytest.mark.parametrize("option, registered", [("model.pos=alibi", "learned, rope, rope_time"),
                                                ("model.heads=serial", "cascade, cascade_cache, cascade_lookup, cascade_relative, parallel"),
                                                ("model.norm_position=sandwich", "post, pre")])
def test_an_unknown_choice_is_refused_listing_the_registered_ones(option, registered):
    with pytest.raises(ConfigError, match=f"{option.split('=')[0]}=.*choose one of: {registered}$"):
        validate_model_config(compose_train("model=tiny", option).model)
