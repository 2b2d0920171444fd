"""Every experiment preset composes, validates, and changes exactly what its claim is about."""
from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from midiformer.sweeps.runs import flatten
from midiformer.train.config import validate_config
from tests.conftest import CONF_DIR
from tests.train.conftest import compose_config

PRESETS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))

# What each preset changes against the defaults (a key, or a node: everything under it may change);
# every other option must stay as it is.
CHANGES = {
    "baseline": {},
    "weight_scaling": {"model.init": "gpt2"},
    "tfixup": {"model.init": "tfixup", "model.norm": "none", "optim.warmup_steps": 0},
    "swa": {"optim.swa": "on"},
    "scalenorm": {"model.norm": "scalenorm"},
    "fixnorm": {"model.norm": "fixnorm"},
    "mixed_precision": {"trainer.precision": "bf16-mixed"},
    "embedding_pytorch": {"model.embedding_init": "pytorch"},
    "embedding_scaled": {"model.embedding_init": "scaled"},
    "augmentation": {"data.augment": "all"},
}


def node_of(key: str, nodes) -> str | None:
    return next((node for node in nodes if key == node or key.startswith(node + ".")), None)


def settings(*overrides: str) -> dict:
    return flatten(OmegaConf.to_container(compose_config(*overrides), resolve=True))


def test_there_is_a_preset_per_claim():
    assert set(PRESETS) == set(CHANGES)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_composes_validates_and_overrides_only_what_differs(preset):
    validate_config(compose_config(f"experiment={preset}"))
    defaults, chosen = settings(), settings(f"experiment={preset}")
    differing = {k for k in defaults.keys() | chosen.keys() if defaults.get(k, "absent") != chosen.get(k, "absent")}
    expected = CHANGES[preset]
    touched = {node_of(key, expected) for key in differing}  # None: an option the preset should not touch
    assert touched == set(expected), sorted(differing)
    for key, value in expected.items():
        assert chosen.get(key, chosen.get(f"{key}.name")) == value, key
    assert (CONF_DIR / "experiment" / f"{preset}.yaml").read_text().startswith("# @package _global_\n")


def test_a_preset_combines_with_other_overrides():
    cfg = compose_config("experiment=scalenorm", "model=tiny", "seed=3")
    assert (cfg.model.norm.name, cfg.model.d_model, cfg.seed) == ("scalenorm", 32, 3)


@pytest.mark.parametrize("space", sorted(p.stem for p in (CONF_DIR / "hpo" / "space").glob("*.yaml")))
@pytest.mark.parametrize("sampler", sorted(p.stem for p in (CONF_DIR / "hpo" / "sampler").glob("*.yaml")))
@pytest.mark.parametrize("pruner", sorted(p.stem for p in (CONF_DIR / "hpo" / "pruner").glob("*.yaml")))
def test_every_search_config_composes_and_builds(space, sampler, pruner):
    from midiformer.sweeps.hpo import check_space

    cfg = compose_config(f"hpo/space={space}", f"hpo/sampler={sampler}", f"hpo/pruner={pruner}", config_name="hpo")
    check_space(cfg)
    validate_config(cfg)
    instantiate(cfg.hpo.sampler, seed=0), instantiate(cfg.hpo.pruner)
