"""Every data and data/augment choice composes with Hydra's compose API and builds what it names."""
from __future__ import annotations

import re

import numpy as np
import pytest
from omegaconf import OmegaConf

from midiformer.codec import events
from midiformer.data.augment import AUGMENTS
from tests.conftest import CONF_DIR
from tests.data.conftest import compose

DATA_CHOICES = sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml"))
AUGMENT_CHOICES = sorted(p.stem for p in (CONF_DIR / "data" / "augment").glob("*.yaml"))


def test_one_yaml_per_choice():
    assert DATA_CHOICES == ["bach", "midi_dir"]
    assert AUGMENT_CHOICES == AUGMENTS.names()


@pytest.mark.parametrize("config_file", sorted((CONF_DIR / "data").rglob("*.yaml")), ids=lambda p: p.stem)
def test_every_option_is_commented(config_file):
    for line in config_file.read_text().splitlines():
        if re.match(r"^\s*\w+:", line) and not re.match(r"^name:", line) and not line.rstrip().endswith(":"):
            assert "#" in line, f"{config_file.name}: no comment on {line.strip()!r}"


@pytest.mark.parametrize("augment", AUGMENT_CHOICES)
@pytest.mark.parametrize("data", DATA_CHOICES)
def test_train_config_composes_every_data_choice(data, augment):
    root = ["data.root=/music"] if data == "midi_dir" else []
    cfg = compose("config", [f"data={data}", f"data/augment={augment}", *root])
    assert cfg.data.name == data and cfg.data.augment.name == augment
    assert events.codec_settings(**cfg.data.codec) == events.codec_settings() and cfg.data.num_workers is None
    assert OmegaConf.to_container(cfg.data.splits) == {"train": 0.9, "val": 0.05, "test": 0.05}
    assert (cfg.data.seq_len, cfg.data.batch_size, cfg.data.eval_batch_size) == (256, 16, 16)
    aug = AUGMENTS.build(cfg.data.augment)
    window = np.zeros((5, len(events.FIELDS)), dtype=np.int64)
    window[:, 0] = [events.START, events.NOTE_ON, events.NOTE_OFF, events.TIME_SHIFT, events.END]
    window[1:3, events.COLUMN["note"]], window[1, events.COLUMN["velocity"]] = 60, 80
    window[:, events.COLUMN["time"]] = [0, 10, 20, 384, 4]
    assert aug(window.copy(), np.random.default_rng(0)).shape == window.shape


def test_midi_dir_needs_a_root():
    cfg = compose("prepare", ["data=midi_dir"])
    assert OmegaConf.is_missing(cfg.data, "root")
    assert compose("prepare", ["data=midi_dir", "data.root=/music"]).data.root == "/music"


def test_prepare_defaults_to_bach_and_writes_under_outputs():
    cfg = compose("prepare", [])
    assert cfg.data.name == "bach" and cfg.data.limit is None and "augment" not in cfg.data
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        hydra_cfg = hydra_compose("prepare", return_hydra_config=True).hydra
    assert hydra_cfg.run.dir.startswith("outputs/") and hydra_cfg.job.chdir is False


def test_cache_dir_follows_the_environment(monkeypatch):
    monkeypatch.delenv("MIDIFORMER_CACHE", raising=False)
    assert compose("prepare", []).data.cache_dir == "~/.cache/midiformer"
    monkeypatch.setenv("MIDIFORMER_CACHE", "/scratch/cache")
    assert compose("prepare", ["data=midi_dir"]).data.cache_dir == "/scratch/cache"


@pytest.mark.parametrize("choice", sorted(p.stem for p in (CONF_DIR / "data" / "codec").glob("*.yaml")))
def test_every_codec_choice_is_what_encode_takes(choice, dev_data):
    cfg = compose("prepare", [f"data/codec={choice}"])
    settings = events.codec_settings(**OmegaConf.to_container(cfg.data.codec))  # the same keys as encode's
    rows = events.encode(dev_data / "pop909" / "pop909_001.mid", **cfg.data.codec)
    carries_controls = bool(settings["controls"]) or settings["pitch_bend"]
    assert (events.CONTROL in rows[:, 0]) == (64 in settings["controls"])
    assert carries_controls == (choice == "performance")


def test_the_default_codec_is_the_performance_one():
    assert compose("prepare", []).data.codec == compose("prepare", ["data/codec=performance"]).data.codec
    assert events.codec_settings(**compose("prepare", []).data.codec) == events.codec_settings()  # encode's defaults
    with pytest.raises(Exception, match="data.codec.controls: 123"):
        events.codec_settings(**compose("prepare", ["data.codec.controls=[64,123]"]).data.codec)
