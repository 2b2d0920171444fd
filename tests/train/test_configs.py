"""Every trainer-side config choice composes with Hydra's compose API, validates, and builds what it names."""
from __future__ import annotations

import re

import pytest

from midiformer.common import ConfigError
from midiformer.data.sources import DATA_SOURCES
from midiformer.train.config import validate_config
from midiformer.train.optim import OPTIMIZERS, build_optimizer
from midiformer.train.precision import PRECISIONS
from midiformer.train.swa import SWAS
from tests.conftest import CONF_DIR
from tests.train.conftest import compose_config

GROUPS = {"optim": OPTIMIZERS, "optim/swa": SWAS, "trainer/precision": PRECISIONS, "data": DATA_SOURCES}


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_one_yaml_per_registered_choice(group):
    assert choices(group) == GROUPS[group].names()


@pytest.mark.parametrize("choice", choices("trainer/precision"))
def test_every_precision_composes_and_builds(choice):
    cfg = compose_config(f"trainer/precision={choice}")
    validate_config(cfg)
    assert cfg.trainer.precision.name == choice
    if choice == "fp16-mixed":
        with pytest.raises(ConfigError, match="needs CUDA"):
            PRECISIONS.build(cfg.trainer.precision, device_type="cpu")
    else:
        precision = PRECISIONS.build(cfg.trainer.precision, device_type="cpu")
        assert precision.name == ("fp32" if choice == "auto" else choice)
    assert PRECISIONS.build(cfg.trainer.precision, device_type="cuda").name == (
        "bf16-mixed" if choice == "auto" else choice)


@pytest.mark.parametrize("choice", choices("optim/swa"))
def test_every_swa_choice_composes_and_builds(choice):
    import torch

    cfg = compose_config(f"optim/swa={choice}")
    validate_config(cfg)
    model = torch.nn.Linear(2, 2)
    swa = SWAS.build(cfg.optim.swa, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                     max_steps=cfg.trainer.max_steps)
    assert (swa.model is not None) == (choice == "on")


@pytest.mark.parametrize("choice", choices("optim"))
def test_every_optimizer_composes_and_builds_what_it_names(choice):
    import torch

    from midiformer.model import MidiGPT

    cfg = compose_config("model=tiny", "data.seq_len=64", f"optim={choice}")
    validate_config(cfg)
    model = MidiGPT(cfg.model)
    optimizer = build_optimizer(model, cfg.optim)
    assert type(optimizer) is {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[choice]
    assert optimizer.defaults["lr"] == cfg.optim.lr
    decayed, not_decayed = optimizer.param_groups
    assert decayed["weight_decay"] == cfg.optim.weight_decay and not_decayed["weight_decay"] == 0.0
    if choice == "sgd":
        assert optimizer.defaults["momentum"] == cfg.optim.momentum and optimizer.defaults["nesterov"]


@pytest.mark.parametrize("overrides, message", [
    (["optim.name=lion"], "optim='lion' is unknown; choose one of: adamw, sgd"),
    (["optim.betas=[0.9, 1.0]"], "optim.betas=[0.9, 1.0] must be two numbers in [0, 1)"),
    (["optim.eps=0"], "optim.eps=0 must be a number > 0"),
    (["optim=sgd", "optim.momentum=1.5"], "optim.momentum=1.5 must be a number in [0, 1)"),
    (["optim=sgd", "optim.momentum=0"], "optim.nesterov=true needs optim.momentum > 0"),
    (["optim=sgd", "+optim.betas=[0.9, 0.95]"], "optim='sgd': got an unexpected keyword argument 'betas'"),
    (["data.name=lakh"], "data='lakh' is unknown; choose one of: bach, midi_dir"),
])
def test_a_bad_optimizer_or_data_source_is_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        validate_config(compose_config(*overrides))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_defaults_are_the_main_job():
    cfg = compose_config()
    validate_config(cfg)
    assert (cfg.data.name, cfg.model.d_model, cfg.trainer.precision.name, cfg.optim.swa.name) == (
        "bach", 256, "auto", "off")
    assert cfg.logger.wandb.mode == "disabled"


def test_evaluate_config_composes():
    cfg = compose_config("checkpoint=x.pt", config_name="evaluate")
    assert cfg.split == "test" and cfg.get("data") is None
    assert compose_config("checkpoint=x.pt", "data=midi_dir", "data.root=/m", config_name="evaluate").data.root == "/m"


@pytest.mark.parametrize("config_file", sorted(p for group in ("optim", "trainer", "logger")
                                               for p in (CONF_DIR / group).rglob("*.yaml")), ids=lambda p: p.stem)
def test_every_option_is_commented(config_file):
    for line in config_file.read_text().splitlines():
        if re.match(r"^\s*\w+:", line) and not re.match(r"^name:", line) and not line.rstrip().endswith(":"):
            assert "#" in line, f"{config_file.name}: no comment on {line.strip()!r}"
