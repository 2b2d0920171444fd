"""trainer.sample_every: a tiny training run on real songs writes a sample of a fixed validation primer at
each sample step, logs it to TensorBoard, and trains exactly as the same run without samples."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from midiformer.generate import audio
from midiformer.generate.during_training import LOGGED
from midiformer.train.loop import train
from midiformer.train.metrics import read_metrics
from tests.train.conftest import TINY, compose_config

pytestmark = pytest.mark.slow  # two tiny training runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dev_data):
    root = tmp_path_factory.mktemp("sampled_runs")
    common = (*TINY, f"data.cache_dir={root / 'cache'}", "trainer.max_steps=4", "trainer.val_every=2",
              "trainer.sample_events=40", "data/codec=seed")  # seed codec: a 4-step model's samples hold notes
    train(compose_config(*common, "trainer.sample_every=2", "logger.tensorboard=true"), root / "sampled")
    train(compose_config(*common, "trainer.sample_every=0"), root / "plain")
    return root / "sampled", root / "plain"


def test_samples_are_written_at_every_sample_step(runs):
    sampled, plain = runs
    names = sorted(p.name for p in (sampled / "samples").iterdir())
    suffixes = [".json", ".mid", ".png"] + ([".wav"] if audio.synthesizer() else [])
    assert names == sorted(f"step_{s:06d}{x}" for s in (2, 4) for x in suffixes)
    report = json.loads((sampled / "samples" / "step_000004.json").read_text())
    assert report["step"] == 4 and report["metrics"]["primer"]["notes"] > 0
    assert not (plain / "samples").exists()


def test_the_same_primer_at_every_step(runs):
    sampled, _ = runs
    primers = [json.loads((sampled / "samples" / f"step_{s:06d}.json").read_text())["metrics"]["primer"]
               for s in (2, 4)]
    assert primers[0] == primers[1]


def test_samples_are_logged_to_tensorboard(runs):
    sampled, _ = runs
    logs = EventAccumulator(str(sampled), size_guidance={"images": 0, "audio": 0}).Reload()
    assert [e.step for e in logs.Images("sample/pianoroll")] == [2, 4]
    if audio.synthesizer():
        assert [e.step for e in logs.Audio("sample/audio")] == [2, 4]
    logged = {tag for tag in logs.Tags()["scalars"] if tag.startswith("sample/")}
    expected = set()  # every figure the sample's JSON has (a 4-step model's sample may hold no note at all)
    for step in (2, 4):
        report = json.loads((sampled / "samples" / f"step_{step:06d}.json").read_text())["metrics"]["continuation"]
        expected |= {f"sample/{name}" for name in LOGGED if report.get(name) is not None}
    assert logged == expected and "sample/notes" in logged


def test_sampling_does_not_change_the_training(runs):
    sampled, plain = runs
    def learning(rows):  # what the model learned, without the timings (events/s, MFU, data wait)
        return [{k: v for k, v in r.items() if k == "step" or k.startswith(("train/", "val/", "lr"))} for r in rows]

    assert learning(read_metrics(sampled)) == learning(read_metrics(plain))
    assert np.isfinite([r["train/loss"] for r in read_metrics(sampled) if "train/loss" in r]).all()


def test_samples_go_to_wandb_offline(runs, tmp_path):
    """MetricSinks.log_media with W&B in offline mode: the piano roll and the audio land in the run's media."""
    from omegaconf import OmegaConf

    from midiformer.train.metrics import MetricSinks

    sampled, _ = runs
    logger = OmegaConf.create({"tensorboard": False, "progress": False,
                               "wandb": {"mode": "offline", "project": "midiformer-test", "entity": None, "tags": []}})
    sinks = MetricSinks(tmp_path, logger, {"test": True})
    wav = sampled / "samples" / "step_000004.wav"
    sinks.log_media(4, "sample", sampled / "samples" / "step_000004.png", wav if wav.exists() else None,
                    {"sample/chord_rate": 0.5})
    sinks.close()
    media = {p.suffix for p in tmp_path.glob("wandb/offline-run-*/files/media/**/*") if p.is_file()}
    assert ".png" in media and (".wav" in media or not wav.exists())


def test_a_failed_render_costs_the_sample_its_audio_not_the_run(tmp_path, dev_data, monkeypatch, caplog):
    """FluidSynth failing (a crash, a signal) leaves the sample without its .wav and the run going."""
    import logging
    import subprocess

    def broken_render(midi_path, wav_path, synth, sample_rate=44100):
        raise subprocess.CalledProcessError(-12, ["fluidsynth"])

    monkeypatch.setattr(audio, "synthesizer", lambda soundfont=None: ("fluidsynth", tmp_path / "font.sf2"))
    monkeypatch.setattr(audio, "render_wav", broken_render)
    cfg = compose_config(*TINY, f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_steps=2", "trainer.val_every=2",
                         "trainer.sample_events=20", "trainer.sample_every=2", "data/codec=seed")
    with caplog.at_level(logging.WARNING):
        train(cfg, tmp_path / "run")
    assert "step 2: no audio for the sample" in caplog.text
    names = sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())
    assert names == ["step_000002.json", "step_000002.mid", "step_000002.png"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"
