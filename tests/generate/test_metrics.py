"""Sample metrics on real songs of the dev corpus: a song's own continuation scores as itself, the figures
agree with MusPy reading the file on its own, and each metric moves the way its definition says."""
from __future__ import annotations

import math

import muspy
import numpy as np
import pytest

from midiformer.codec import events
from midiformer.generate import metrics, primer

POP = "pop909/pop909_001.mid"  # MELODY (channel 0), BRIDGE (1), PIANO (2): chords on the piano
GROOVE = "groove/drummer1_eval_session_1_funk-groove1_138_beat_4-4.mid"  # drums only
BAND = "openmsx/coconut_run2.mid"  # bass, chromatic percussion, drums


def song_notes(path) -> metrics.Notes:
    return metrics.notes_of_rows(events.encode(path))


def test_notes_agree_with_muspy_reading_the_file(dev_data):
    for name in (POP, BAND):
        ours = song_notes(dev_data / name)
        theirs = muspy.read_midi(dev_data / name)
        their_pitches = sorted(n.pitch for t in theirs.tracks for n in t.notes)
        assert sorted(ours.pitch.tolist()) == their_pitches
        # Pitch metrics do not depend on the time grid: MusPy on its own reading gives the same figure.
        music = metrics.to_muspy(ours, 96)
        assert muspy.pitch_class_entropy(music) == pytest.approx(muspy.pitch_class_entropy(theirs), abs=1e-9)
        assert muspy.scale_consistency(music) == pytest.approx(muspy.scale_consistency(theirs), abs=1e-9)


def first_rows_to_a_tick_boundary(rows: np.ndarray, n: int) -> np.ndarray:
    """rows[:m], m >= n, ending with the last row of its tick (so no note of the last tick is left out)."""
    ticks = events.grid_ticks(rows)
    return rows[:int(np.searchsorted(ticks, ticks[n], side="right"))]


def test_the_real_continuation_scores_exactly_as_itself(dev_data):
    cut = primer.load_cut(dev_data / POP, 96, seconds=8, start_seconds=20)
    report = metrics.continuation_report(cut.primer, first_rows_to_a_tick_boundary(cut.rest, 400), cut.rest, 96)
    assert report["continuation_vs_real"] == {"pitch_class_distance": 0.0, "onset_grid_distance": 0.0,
                                              "instruments_kept": 1.0}
    for name in metrics.PART_METRICS:
        assert report["continuation"][name] == report["real"][name], name
    assert report["tempo"]["tempo_ratio"] == pytest.approx(1.0)
    assert report["continuation"]["notes"] > 50 and report["primer"]["notes"] > 20


def test_a_continuation_from_another_song_is_further_from_the_real_one(dev_data):
    cut = primer.load_cut(dev_data / POP, 96, seconds=8, start_seconds=20)
    other = primer.load_cut(dev_data / BAND, 96, seconds=4, start_seconds=10).rest[:400]
    report = metrics.continuation_report(cut.primer, other, cut.rest, 96)
    own = metrics.continuation_report(cut.primer, cut.rest[:400], cut.rest, 96)
    assert report["continuation_vs_real"]["pitch_class_distance"] > 0.2
    assert report["continuation_vs_primer"]["pitch_class_distance"] > own["continuation_vs_primer"]["pitch_class_distance"]
    assert report["continuation_vs_primer"]["instruments_kept"] < 0.5  # bass and drums where the primer had piano


def test_chord_rate_counts_three_or_more_sounding_pitches(dev_data):
    notes = song_notes(dev_data / POP)
    melody, piano = notes.select(notes.channel == 0), notes.select(notes.channel == 2)
    assert metrics.chord_rate(melody) < 0.05  # a single line
    assert metrics.chord_rate(piano) > 0.3  # the accompaniment plays chords
    chord = metrics.Notes(*(np.array(v) for v in ([0, 0, 0, 96], [96, 96, 96, 192], [0] * 4, [60, 64, 67, 60],
                                                  [80] * 4, [0] * 4)))
    assert metrics.chord_rate(chord) == 0.5  # onset 0: C-E-G; onset 96: one note
    assert metrics.chord_rate(chord.select(np.array([True, True, False, True]))) == 0.0
    assert math.isnan(metrics.chord_rate(song_notes(dev_data / GROOVE)))  # drums only: nothing to measure


def test_drum_hits_are_short_and_pitch_metrics_ignore_drums(dev_data):
    notes = song_notes(dev_data / GROOVE)
    figures = metrics.part_metrics(notes, int(notes.offset.max()), 96)
    assert figures["median_beats_drums"] < 0.5 and figures["durations"]["drums"]["notes"] == len(notes)
    assert figures["median_beats_melodic"] is None and figures["pitch_class_entropy"] is None
    assert figures["groove_consistency"] > 0.8  # a steady beat, bar after bar


def test_the_onset_grid_distance_sees_a_shift_off_the_beat(dev_data):
    notes = song_notes(dev_data / POP)
    histogram = metrics.onset_grid_histogram(notes, 96)
    assert metrics.histogram_distance(histogram, metrics.onset_grid_histogram(notes.shifted(96), 96)) == 0.0
    off_grid = metrics.histogram_distance(histogram, metrics.onset_grid_histogram(notes.shifted(8), 96))
    assert off_grid > 0.8  # a 1/12 beat late: off the sixteenth grid the song plays on


def test_tempo_and_instrument_changes_are_reported(dev_data):
    cut = primer.load_cut(dev_data / POP, 96, seconds=6)
    continuation = cut.rest[:200].copy()
    tempo = np.zeros((1, len(events.FIELDS)), np.int64)
    tempo[0, 0] = events.TEMPO
    tempo[0, 2:6] = events.tempo_fields(round(60e6 / (2 * metrics.last_bpm(cut.primer))))  # twice as fast
    continuation[:, 3] = np.where(continuation[:, 0] == events.NOTE_ON, 33, continuation[:, 3])  # electric bass
    report = metrics.continuation_report(cut.primer, np.concatenate([tempo, continuation]), cut.rest, 96)
    assert report["tempo"]["tempo_ratio"] == pytest.approx(2.0, rel=1e-3)
    assert report["continuation_vs_primer"]["instruments_kept"] == 0.0  # piano primer, bass continuation
    assert set(report["continuation"]["durations"]) == {"bass"}


@pytest.mark.parametrize("seed", range(10))
def test_notes_of_rows_follow_the_codec_rule_on_random_rows(seed):
    """Note-ons with and without a duration, note-offs (some with nothing to end), colliding keys: each
    note ends as the obvious loop says (a note-off ends the earliest OPEN note of its key)."""
    rng = np.random.default_rng(seed)
    n = 80
    rows = np.zeros((n, len(events.FIELDS)), np.int64)
    rows[:, events.TYPE] = rng.choice([events.NOTE_ON, events.NOTE_OFF, events.PROGRAM], n, p=[.5, .4, .1])
    rows[:, events.TIME] = rng.integers(0, 4, n)
    rows[:, events.CHANNEL], rows[:, events.NOTE] = rng.integers(0, 2, n), rng.integers(60, 62, n)
    on = rows[:, events.TYPE] == events.NOTE_ON
    rows[on, events.DURATION] = np.where(rng.random(on.sum()) < 0.5, events.OPEN, rng.integers(1, 9, on.sum()))
    rows[on, events.VELOCITY] = rng.integers(1, 128, on.sum())
    ticks = np.cumsum(rows[:, events.TIME])
    end, sounding, offsets = int(ticks[-1]), {}, []
    for i, row in enumerate(rows.tolist()):
        key = (row[events.CHANNEL], row[events.NOTE])
        if row[events.TYPE] == events.NOTE_ON:
            open_ = row[events.DURATION] == events.OPEN
            offsets.append(end if open_ else min(int(ticks[i]) + row[events.DURATION] - 1, end))
            if open_:
                sounding.setdefault(key, []).append(len(offsets) - 1)
        elif row[events.TYPE] == events.NOTE_OFF and sounding.get(key):
            offsets[sounding[key].pop(0)] = int(ticks[i])
    notes = metrics.notes_of_rows(rows)
    assert notes.onset.tolist() == ticks[on].tolist() and notes.offset.tolist() == offsets
    assert notes.pitch.tolist() == rows[on, events.NOTE].tolist()
