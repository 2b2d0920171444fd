"""encode then decode keeps every note of every dev file: pitch, velocity, channel and program exactly,
onset and offset within half a grid step (in beats), and every tempo change."""
from __future__ import annotations

import numpy as np
import pytest

from midiformer.codec import events
from tests.codec.mido_oracle import notes_and_tempos
from tests.conftest import DEV_DATA, dev_files

TICKS_PER_BEAT = 96
HALF_STEP = 0.5 / TICKS_PER_BEAT + 1e-9
TEMPO_TOLERANCE = 5e-4  # relative; a tempo bin is 0.03% wide


def assert_same_music(original_path, decoded_path):
    original_notes, original_tempos = notes_and_tempos(original_path)
    decoded_notes, decoded_tempos = notes_and_tempos(decoded_path)
    assert original_notes.keys() == decoded_notes.keys()
    for key, original in original_notes.items():
        decoded = decoded_notes[key]
        assert len(decoded) == len(original), f"{original_path}: notes of channel/pitch {key}"
        a, b = np.array(original), np.array(decoded)
        np.testing.assert_array_equal(a[:, 2:], b[:, 2:], err_msg=f"{original_path}: {key}")
        assert np.abs(a[:, :2] - b[:, :2]).max() <= HALF_STEP, f"{original_path}: timing of {key}"
    assert len(decoded_tempos) == len(original_tempos)
    for (beat_a, bpm_a), (beat_b, bpm_b) in zip(original_tempos, decoded_tempos):
        assert abs(beat_a - beat_b) <= HALF_STEP
        assert abs(bpm_a / bpm_b - 1) < TEMPO_TOLERANCE


def roundtrip(path, tmp_path, ticks_per_beat=TICKS_PER_BEAT):
    out = tmp_path / (path.stem + ".decoded.mid")
    events.decode(events.encode(path, ticks_per_beat), out, ticks_per_beat)
    return out


@pytest.mark.parametrize("path", dev_files(), ids=lambda p: str(p.relative_to(DEV_DATA)))
def test_every_dev_file_survives_the_roundtrip(path, tmp_path):
    assert_same_music(path, roundtrip(path, tmp_path))


def test_the_dev_corpus_was_found():
    assert len(dev_files()) == 473, f"expected the 473 files of {DEV_DATA}"
