"""encode then decode keeps every note of every dev file: pitch, velocity, channel and program exactly,
onset and offset within half a grid step in beats and in seconds (+ 1 ms), every tempo value exactly
(its time within a grid step), and every carried control change and pitch bend: value exact, time
within half a grid step."""
from __future__ import annotations

import numpy as np
import pytest

from midiformer.codec import events, grammar, to_midi
from tests.codec import mido_oracle
from tests.conftest import DEV_DATA, dev_files

TICKS_PER_BEAT = 96
HALF_STEP = 0.5 / TICKS_PER_BEAT + 1e-9  # in beats
EVERY_CONTROLLER = list(range(120))  # the strongest setting: every controller a file uses is carried


def seconds_tolerance(beats: np.ndarray, tempos: list) -> np.ndarray:
    """The bound on a time in seconds: 1 ms beyond the grid's own error, half a grid step at the tempo
    in force (the slowest within one step: a tempo change off the grid lands on a step beside it)."""
    tempo_beats = np.array([t[0] for t in tempos] or [0.0])
    tempo_us = np.array([t[2] for t in tempos] or [events.DEFAULT_TEMPO])
    slowest = np.zeros(len(beats))
    for offset in (-1 / TICKS_PER_BEAT, 0.0, 1 / TICKS_PER_BEAT):
        index = np.searchsorted(tempo_beats, beats + offset, side="right") - 1
        slowest = np.maximum(slowest, np.where(index >= 0, tempo_us[np.maximum(index, 0)], events.DEFAULT_TEMPO))
    return 0.5 / TICKS_PER_BEAT * slowest / 1e6 + 1e-3


def assert_same_music(original_path, decoded_path, controls=events.DEFAULT_CONTROLS, pitch_bend=True):
    original, decoded = mido_oracle.read(original_path), mido_oracle.read(decoded_path)
    assert original["notes"].keys() == decoded["notes"].keys()
    for key, notes in original["notes"].items():
        assert len(decoded["notes"][key]) == len(notes), f"{original_path}: notes of channel/pitch {key}"
        a, b = np.array(notes, dtype=np.float64), np.array(decoded["notes"][key], dtype=np.float64)
        np.testing.assert_array_equal(a[:, 2:6], b[:, 2:6], err_msg=f"{original_path}: {key}")
        assert np.abs(a[:, :2] - b[:, :2]).max() <= HALF_STEP, f"{original_path}: timing in beats of {key}"
        for beats, seconds in ((0, 6), (1, 7)):  # onsets, offsets
            bound = seconds_tolerance(a[:, beats], original["tempos"])
            assert (np.abs(a[:, seconds] - b[:, seconds]) <= bound).all(), f"{original_path}: seconds of {key}"
    assert [t[2] for t in decoded["tempos"]] == [t[2] for t in original["tempos"]], "tempos, exactly"
    for (beat_a, _, _), (beat_b, _, _) in zip(original["tempos"], decoded["tempos"]):
        assert abs(beat_a - beat_b) < 1 / TICKS_PER_BEAT  # the grid step before or after (tempo_grid_ticks)
    carried = {key: line for key, line in original["controls"].items() if key[1] in controls}
    assert_same_timelines(original_path, carried, decoded["controls"])
    if pitch_bend:
        assert_same_timelines(original_path, original["bends"], decoded["bends"])
    else:
        assert not decoded["bends"]
    assert not set(decoded["controls"]) - set(carried), "only carried controllers come back"


def assert_same_timelines(path, original: dict, decoded: dict):
    """Every (channel, controller) or channel: the same values in the same order, each within half a grid step."""
    assert {k for k, line in original.items() if line} == set(decoded), path
    for key, line in original.items():
        want, got = mido_oracle.changes(line), decoded[key]
        assert [v for _, _, v in got] == [v for _, _, v in want], f"{path}: values of {key}"
        assert max(abs(a[0] - b[0]) for a, b in zip(want, got)) <= HALF_STEP, f"{path}: timing of {key}"


def roundtrip(path, tmp_path, ticks_per_beat=TICKS_PER_BEAT, **settings):
    out = tmp_path / (path.stem + ".decoded.mid")
    to_midi.decode(events.encode(path, ticks_per_beat=ticks_per_beat, **settings), out, ticks_per_beat)
    return out


# Every eighth file (each source of the corpus) in the fast loop, `make test`; all 473 in `make test-all`.
ROUNDTRIP_FILES = [pytest.param(path, marks=() if i % 8 == 0 else pytest.mark.slow,
                                id=str(path.relative_to(DEV_DATA))) for i, path in enumerate(dev_files())]


@pytest.mark.parametrize("path", ROUNDTRIP_FILES)
def test_every_dev_file_survives_the_roundtrip(path, tmp_path):
    grammar.check(events.encode(path), song=True, controls=events.DEFAULT_CONTROLS, pitch_bend=True)
    rows = events.encode(path, controls=EVERY_CONTROLLER, pitch_bend=True)
    grammar.check(rows, song=True, controls=EVERY_CONTROLLER, pitch_bend=True)
    decoded = tmp_path / "decoded.mid"
    to_midi.decode(rows, decoded)
    assert_same_music(path, decoded, controls=EVERY_CONTROLLER)


def test_the_dev_corpus_was_found():
    assert len(dev_files()) == 473, f"expected the 473 files of {DEV_DATA}"
