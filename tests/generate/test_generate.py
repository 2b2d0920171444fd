"""The generate app end to end: a tiny model trained on real songs continues a real primer; the files it
writes are read back with mido (an independent reader) and checked against the primer's song."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mido
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from midiformer.codec import events, to_midi
from midiformer.common import ConfigError, exit_on_user_error
from midiformer.generate import pianoroll, primer
from midiformer.generate.app import argv_with_primer_file, generate, settings_from
from tests.conftest import REPO
from tests.generate.conftest import generate_cfg

PRIMER_SECONDS = 1.5


def notes_of(path: Path) -> list[tuple[int, int, int, int, int, int]]:
    """(onset, offset, channel, pitch, velocity, program) of every note, read with mido; asserts that every
    note-on is closed by a note-off of its own channel and pitch, and that no note-off is left over."""
    sounding: dict[tuple[int, int], list] = {}
    program, notes, tick = [0] * 16, [], 0
    for message in mido.merge_tracks(mido.MidiFile(path).tracks):
        tick += message.time
        if message.type == "program_change":
            program[message.channel] = message.program
        elif message.type == "note_on" and message.velocity > 0:
            note = (tick, message.velocity, program[message.channel])
            sounding.setdefault((message.channel, message.note), []).append(note)
        elif message.type in ("note_on", "note_off"):
            assert sounding.get((message.channel, message.note)), f"{path.name}: note-off of a silent note at {tick}"
            onset, velocity, prog = sounding[(message.channel, message.note)].pop(0)
            notes.append((onset, tick, message.channel, message.note, velocity, prog))
    assert not any(sounding.values()), f"{path.name}: notes left sounding at the end"
    return sorted(notes)


@pytest.fixture(scope="module")
def generated(trained_checkpoint, primer_song, tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    cfg = generate_cfg(trained_checkpoint, out, f"primer.file={primer_song}", f"primer.seconds={PRIMER_SECONDS}",
                       "n_events=150", "num_samples=2", "seed=1", "allow_end=false")
    paths = generate(cfg, out)
    return out, paths


def test_every_output_file_is_written(generated):
    out, paths = generated
    assert [p.name for p in paths] == ["sample_00.mid", "sample_01.mid"]
    for stem in ("sample_00", "sample_01"):
        for suffix in (".mid", ".png", ".json"):
            assert (out / (stem + suffix)).stat().st_size > 0


def test_the_samples_are_summarised(generated):
    out, _ = generated
    summary = json.loads((out / "summary.json").read_text())
    chord_rates = [json.loads((out / f"sample_{i:02d}.json").read_text())["metrics"]["continuation"]["chord_rate"]
                   for i in range(2)]
    chord_rates = [c for c in chord_rates if c is not None]
    if chord_rates:
        assert summary["table"]["chord_rate"]["model"]["mean"] == pytest.approx(np.mean(chord_rates))
    assert summary["table"]["notes_per_beat"]["model"]["n"] == 2 and summary["samples_per_primer"] == 2
    assert summary["table"]["notes_per_beat"]["real"]["n"] == 2  # the primer song's real continuation, per sample
    assert "| notes_per_beat |" in (out / "summary.md").read_text()


def test_the_primer_plays_as_in_the_song_then_the_whistle_then_the_continuation(generated, primer_song, tmp_path):
    out, _ = generated
    on_grid = tmp_path / "song_on_the_grid.mid"  # the song as the codec sees it (its 96-step grid)
    to_midi.decode(events.encode(primer_song), on_grid)
    song_notes = notes_of(on_grid)
    for stem in ("sample_00", "sample_01"):
        report = json.loads((out / f"{stem}.json").read_text())
        handover, whistle = report["handover"]["tick"], report["whistle"]
        assert 0 < report["handover"]["seconds"] < PRIMER_SECONDS
        notes = notes_of(out / f"{stem}.mid")  # every note closed: valid, playable MIDI
        model_notes = [n for n in notes if n[2] != whistle["channel"]]
        # Every note of the song that starts before the hand-over is in the output, with its pitch,
        # velocity and instrument; the ones still sounding at the hand-over may end differently.
        assert Counter((n[0], *n[2:]) for n in model_notes if n[0] < handover) == \
            Counter((n[0], *n[2:]) for n in song_notes if n[0] < handover)
        assert [n for n in model_notes if n[1] < handover] == [n for n in song_notes if n[1] < handover]
        # The whistle: one note of GM Whistle at the hand-over, on a channel the primer does not use.
        whistle_notes = [n for n in notes if n[2] == whistle["channel"] and n[0] <= handover + whistle["ticks"]]
        assert whistle_notes[0] == (handover, handover + whistle["ticks"], whistle["channel"], 84, 100, primer.WHISTLE_PROGRAM)
        assert whistle["channel"] not in {n[2] for n in song_notes if n[0] <= handover}
        assert whistle["channel"] != events.DRUM_CHANNEL
        assert len([n for n in model_notes if n[0] >= handover]) > 5  # the model continued


def test_the_json_holds_every_event_and_agrees_with_the_midi(generated, tmp_path):
    out, _ = generated
    report = json.loads((out / "sample_00.json").read_text())
    assert report["settings"]["n_events"] == 150 and report["settings"]["primer"]["seconds"] == PRIMER_SECONDS
    parts = [e["part"] for e in report["events"]]
    n_primer = report["handover"]["primer_events"]
    assert parts[:n_primer] == ["primer"] * n_primer and parts[n_primer] == "continuation"
    assert report["events"][-1]["type"] == "end"
    sampled = [e["logprob"] for e in report["events"] if e["part"] == "continuation"]
    assert all(lp is not None and lp < 0 for lp in sampled) and 1 < len(sampled) <= 150
    assert report["continuation_logprob"] == pytest.approx(sum(sampled))
    assert all(e["logprob"] is None for e in report["events"] if e["part"] != "continuation")
    rows = np.array([[events.TYPES.index(e["type"])] + [e[f] for f in events.FIELDS[1:]] for e in report["events"]])
    to_midi.decode(rows, tmp_path / "from_json.mid")
    whistle_channel = report["whistle"]["channel"]
    from_midi = [n for n in notes_of(out / "sample_00.mid") if n[2] != whistle_channel or n[5] != primer.WHISTLE_PROGRAM]
    assert notes_of(tmp_path / "from_json.mid") == from_midi


def test_the_piano_roll_is_a_picture_of_the_notes(generated):
    out, _ = generated
    report = json.loads((out / "sample_00.json").read_text())
    handover, whistle_channel = report["handover"]["tick"], report["whistle"]["channel"]
    image = imread(out / "sample_00.png")[..., :3]  # floats in [0, 1], rows from the top
    # The same drawing, not saved: its axes map (beat, pitch) to the PNG's pixels.
    ax = pianoroll.draw_pianoroll(out / "sample_00.mid", handover, whistle_channel).axes[0]

    def pixel(beat: float, pitch: float) -> np.ndarray:
        x, y = ax.transData.transform((beat, pitch))
        return image[int(round(image.shape[0] - y)), int(x)]

    notes = notes_of(out / "sample_00.mid")
    primer_notes = [n for n in notes if n[1] <= handover and n[1] - n[0] >= 24 and n[2] != whistle_channel]
    assert len(primer_notes) >= 3
    colours = pianoroll.instrument_colours(n[5] for n in notes if n[2] not in (whistle_channel, events.DRUM_CHANNEL))
    for onset, offset, channel, pitch, _velocity, program in primer_notes:
        colour = np.array(to_rgb(pianoroll.DRUM_COLOUR if channel == events.DRUM_CHANNEL else colours[program]))
        assert np.abs(pixel((onset + offset) / 2 / 96, pitch) - colour).max() < 0.05, (onset, pitch)
    whistle = [n for n in notes if n[2] == whistle_channel][0]
    assert np.abs(pixel((whistle[0] + whistle[1]) / 2 / 96, whistle[3]) - to_rgb(pianoroll.WHISTLE_COLOUR)).max() < 0.05
    # Where no note sounds: the primer's shade before the hand-over, white after it.
    pitches = {n[3] for n in notes}
    empty = next(p for p in range(min(pitches), max(pitches)) if not {p - 1, p, p + 1} & pitches)
    before, after = pixel(handover / 96 / 2, empty), pixel(max(n[1] for n in notes) / 96 - 0.2, empty)
    assert np.abs(before - to_rgb(pianoroll.PRIMER_SHADE)).max() < 0.05 and (after > 0.97).all()


def test_without_a_primer_the_model_starts_a_song(trained_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "")  # no fluidsynth: one line says how to get audio
    cfg = generate_cfg(trained_checkpoint, tmp_path, "n_events=60", "allow_end=false", "instruments=[0,33,drums]")
    (path,) = generate(cfg, tmp_path)
    report = json.loads(path.with_suffix(".json").read_text())
    assert report["whistle"] is None and report["handover"] == {"tick": 0, "seconds": 0.0, "primer_events": 1}
    assert len(report["events"]) >= 62 and report["events"][0]["type"] == "start"
    notes = notes_of(path)
    assert notes and {n[5] for n in notes if n[2] != events.DRUM_CHANNEL} <= {0, 33}
    assert sum("no .wav written" in line for line in capsys.readouterr().out.splitlines()) == 1
    assert not path.with_suffix(".wav").exists()


def test_a_wav_is_rendered_through_fluidsynth_when_it_is_found(trained_checkpoint, tmp_path, monkeypatch):
    bin_dir, soundfont = tmp_path / "bin", tmp_path / "gm.sf2"
    bin_dir.mkdir()
    soundfont.write_bytes(b"RIFF")
    fake = bin_dir / "fluidsynth"  # records its arguments and writes the file named after -F
    fake.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\nwhile [ "$1" != "-F" ]; do shift; done\n'
                    'echo RIFF > "$2"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (path,) = generate(generate_cfg(trained_checkpoint, tmp_path, "n_events=10", f"soundfont={soundfont}"), tmp_path)
    assert path.with_suffix(".wav").read_text() == "RIFF\n"
    assert (bin_dir / "args").read_text().split()[-2:] == [str(soundfont), str(path)]


BAD_INPUTS = {
    "missing primer": (["primer.file=/no/such/song.mid"], "no such file"),
    "primer that is not MIDI": (["primer.file={not_midi}"], "not a MIDI file"),
    "not a checkpoint": (["checkpoint={not_midi}"], "not a midiformer checkpoint"),
    "missing checkpoint": (["checkpoint=/no/such/best.pt"], "no such checkpoint file"),
    "primer longer than the context": (["primer.file={song}", "primer.seconds=60"], "more than the context"),
    "unknown instrument": (["instruments=[0,banjo]"], "'banjo' is unknown"),
    "bad option": (["n_events=0"], "n_events=0 must be"),
    "bad seeds": (["seeds=[-1]"], "seeds=[-1] must be"),
    "bad memorisation option": (["memorisation.ngram=1"], "memorisation.ngram=1 must be"),
    "memorisation store that is not one": (["memorisation.store=/no/such/store"], "not a prepared store"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_ends_with_one_line(case, trained_checkpoint, primer_song, tmp_path, capsys):
    not_midi = tmp_path / "notes.txt"
    not_midi.write_text("these are not notes")
    overrides, message = BAD_INPUTS[case]
    overrides = [o.format(not_midi=not_midi, song=primer_song) for o in overrides]
    with pytest.raises(SystemExit) as stop:
        exit_on_user_error(generate, generate_cfg(trained_checkpoint, tmp_path, *overrides), tmp_path)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert not list(tmp_path.glob("*.mid"))


@pytest.mark.slow
def test_the_command_line(trained_checkpoint, primer_song, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "midiformer.generate", f"checkpoint={trained_checkpoint}", f"primer={primer_song}",
               "primer.seconds=1", "n_events=30", f"out_dir={tmp_path}", "progress=false", f"hydra.run.dir={tmp_path}"]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "sample_00.json").read_text())["settings"]["primer"]["file"] == str(primer_song)
    bad = subprocess.run(command[:3] + [f"checkpoint={primer_song}"] + command[4:], env=env, cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_primer_equals_file_is_short_for_primer_file():
    assert argv_with_primer_file(["x", "primer=a.mid", "primer.seconds=3", "n_events=4"]) == \
        ["x", "primer.file=a.mid", "primer.seconds=3", "n_events=4"]


def test_sampling_options_are_a_number_or_one_per_field(tmp_path):
    cfg = generate_cfg(Path("any.pt"), tmp_path, "temperature={note:0.9,velocity:0.5}", "top_k=5")
    fields = dict(zip(events.FIELDS, settings_from(cfg, events.codec_settings()).fields))
    assert (fields["note"].temperature, fields["velocity"].temperature, fields["type"].temperature) == (0.9, 0.5, 1.0)
    assert {f.top_k for f in fields.values()} == {5}
    for bad, message in (("temperature={pitch:0.9}", "'pitch' is not a field"), ("top_p=0", "top_p.type=0"),
                         ("temperature=0", "temperature.type=0")):
        with pytest.raises(ConfigError, match=message):
            settings_from(generate_cfg(Path("any.pt"), tmp_path, bad), events.codec_settings())
