"""Sample metrics: how a continuation compares with its primer and with the song's real continuation.

    primer_notes, continuation_notes = split_at_handover(notes_of_rows(song_rows), handover_tick)
    report = continuation_report(primer_rows, continuation_rows, real_rows, ticks_per_beat)

Each part (the primer, the model's continuation, the song's real continuation of the same length)
gets the same figures, so a table can set them side by side:

    pitch_class_entropy, scale_consistency, polyphony, polyphony_rate, groove_consistency
        MusPy's definitions, computed by MusPy itself (Dong et al., "MusPy: A Toolkit for Symbolic
        Music Generation", ISMIR 2020: muspy.metrics), the metrics MMT reported (Dong et al. 2023).
        Drum notes are ignored by the pitch metrics (as MusPy does); groove_consistency uses every
        onset, with 4/4 bars (the codec keeps no time signature).
    chord_rate          share of the onset times of melodic notes at which three or more distinct
                        pitches sound (written here; "chords" in the seed's claim).
    notes_per_beat      note density.
    median_beats_melodic, median_beats_drums   median note duration in beats.
    durations           per instrument class (drums, or the General MIDI family of the program):
                        notes, median and mean duration in beats (drum hits are short).

and the continuation is compared with the primer and with the real continuation:

    pitch_class_distance_*   total variation distance between normalised pitch-class histograms of
                             the melodic notes: 0 the same, 1 disjoint (= 1 - the overlapping area of
                             Yang & Lerch, "On the evaluation of generative models in music", 2020).
    onset_grid_distance_*    the same distance between histograms of onset positions within the beat
                             (12 bins: sixteenths and triplets): does the continuation keep the grid?
    tempo_ratio              the continuation's last tempo / the primer's (1.0: tempo kept).
    instruments_kept         share of the continuation's notes on an instrument class the primer uses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from midiformer.codec import events
from midiformer.codec.events import CHANNEL, DURATION, INSTRUMENT, NOTE, TYPE, VELOCITY

if TYPE_CHECKING:
    import muspy

GM_FAMILIES = ("piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
               "pipe", "synth_lead", "synth_pad", "synth_effects", "ethnic", "percussive", "sound_effects")
BEAT_BINS = 12  # onset positions within a beat: sixteenths (every 3rd bin) and triplet eighths (every 4th)
CHORD_SIZE = 3  # distinct pitches sounding together that make a chord
PART_METRICS = ("notes_per_beat", "pitch_class_entropy", "scale_consistency", "polyphony", "polyphony_rate",
                "chord_rate", "groove_consistency", "median_beats_melodic", "median_beats_drums")
COMPARISONS = ("pitch_class_distance", "onset_grid_distance", "instruments_kept")


@dataclass
class Notes:
    """Notes in grid ticks: onset, offset, channel, pitch, velocity, program (one array each)."""

    onset: np.ndarray
    offset: np.ndarray
    channel: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    program: np.ndarray

    def __len__(self) -> int:
        return len(self.onset)

    def select(self, keep: np.ndarray) -> Notes:
        return Notes(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))

    def shifted(self, ticks: int) -> Notes:
        return Notes(self.onset + ticks, self.offset + ticks, self.channel, self.pitch, self.velocity, self.program)

    @property
    def is_drum(self) -> np.ndarray:
        return self.channel == events.DRUM_CHANNEL


def notes_of_rows(rows: np.ndarray, ticks: np.ndarray | None = None) -> Notes:
    """The notes of event rows: a note-on with a duration ends by itself; each note-off ends the earliest
    OPEN note sounding on its channel and pitch (the codec's rule); a note-off with nothing sounding is
    ignored; a note still sounding at the last row ends there. `ticks` are the rows' grid ticks (default:
    the cumulative sum of their gaps)."""
    rows = np.asarray(rows, np.int64)
    ticks = events.grid_ticks(rows) if ticks is None else np.asarray(ticks, np.int64)
    end = int(ticks[-1]) if len(ticks) else 0
    on = np.nonzero(rows[:, TYPE] == events.NOTE_ON)[0]
    ended_by = events.note_partners(rows)[on]
    offset_tick = np.where(rows[on, DURATION] != events.OPEN, np.minimum(ticks[on] + rows[on, DURATION] - 1, end),
                           np.where(ended_by >= 0, ticks[ended_by], end))
    return Notes(ticks[on], offset_tick.astype(np.int64), rows[on, CHANNEL], rows[on, NOTE],
                 rows[on, VELOCITY], rows[on, INSTRUMENT])


def last_bpm(rows: np.ndarray, default: float | None = 120.0) -> float | None:
    """The tempo in force after the rows (MIDI's 120 BPM, or `default`, when they hold no tempo row)."""
    tempo = np.asarray(rows)[np.asarray(rows)[:, TYPE] == events.TEMPO]
    if not len(tempo):
        return default
    return float(events.bpm_of(tempo[-1]))


def instrument_class(program: int, is_drum: bool) -> str:
    return "drums" if is_drum else GM_FAMILIES[int(program) // 8]


def to_muspy(notes: Notes, ticks_per_beat: int) -> muspy.Music:
    """One MusPy track per (channel, program), MusPy's resolution = the codec's grid."""
    import muspy  # here, not at the top: it imports pypianoroll and matplotlib, 2.6 s of every training start

    tracks = []
    for channel, program in sorted(set(zip(notes.channel.tolist(), notes.program.tolist()))):
        group = (notes.channel == channel) & (notes.program == program)
        tracks.append(muspy.Track(program=int(program), is_drum=channel == events.DRUM_CHANNEL, notes=[
            muspy.Note(time=int(t), pitch=int(p), duration=max(int(d), 1), velocity=int(v))
            for t, p, d, v in zip(notes.onset[group], notes.pitch[group],
                                  (notes.offset - notes.onset)[group], notes.velocity[group])]))
    return muspy.Music(resolution=ticks_per_beat, tracks=tracks)


def chord_rate(notes: Notes) -> float:
    """Share of the distinct onset times of melodic notes at which >= CHORD_SIZE distinct pitches sound
    (notes starting there included; a note sounds on [onset, offset), zero-length ones at their onset)."""
    melodic = notes.select(~notes.is_drum)
    if not len(melodic):
        return math.nan
    offset = np.maximum(melodic.offset, melodic.onset + 1)
    times = np.unique(melodic.onset)
    sounding = (melodic.onset[None, :] <= times[:, None]) & (times[:, None] < offset[None, :])
    chords = [len(set(melodic.pitch[row].tolist())) >= CHORD_SIZE for row in sounding]
    return float(np.mean(chords))


def part_metrics(notes: Notes, ticks: int, ticks_per_beat: int) -> dict:
    """The figures of one part, `ticks` long (NaN where a part has no note to measure)."""
    import muspy

    music = to_muspy(notes, ticks_per_beat)
    has_melodic = bool((~notes.is_drum).any())
    with np.errstate(all="ignore"):
        figures = {
            "notes": len(notes),
            "notes_per_beat": len(notes) / max(ticks / ticks_per_beat, 1e-9),
            "pitch_class_entropy": muspy.pitch_class_entropy(music) if has_melodic else math.nan,
            "scale_consistency": muspy.scale_consistency(music) if has_melodic else math.nan,
            "polyphony": muspy.polyphony(music) if has_melodic else math.nan,
            "polyphony_rate": muspy.polyphony_rate(music) if has_melodic else math.nan,
            "chord_rate": chord_rate(notes),
            "groove_consistency": muspy.groove_consistency(music, 4 * ticks_per_beat) if len(notes) else math.nan,
            "median_beats_melodic": _median_beats(notes.select(~notes.is_drum), ticks_per_beat),
            "median_beats_drums": _median_beats(notes.select(notes.is_drum), ticks_per_beat),
            "durations": duration_stats(notes, ticks_per_beat),
        }
    return {key: _plain(value) for key, value in figures.items()}


def _median_beats(notes: Notes, ticks_per_beat: int) -> float:
    return float(np.median((notes.offset - notes.onset) / ticks_per_beat)) if len(notes) else math.nan


def duration_stats(notes: Notes, ticks_per_beat: int) -> dict[str, dict]:
    beats = (notes.offset - notes.onset) / ticks_per_beat
    classes = np.array([instrument_class(p, d) for p, d in zip(notes.program.tolist(), notes.is_drum.tolist())])
    return {name: {"notes": int((classes == name).sum()), "median_beats": float(np.median(beats[classes == name])),
                   "mean_beats": float(beats[classes == name].mean())} for name in sorted(set(classes.tolist()))}


def pitch_class_histogram(notes: Notes) -> np.ndarray:
    return np.bincount(notes.pitch[~notes.is_drum] % 12, minlength=12).astype(np.float64)


def onset_grid_histogram(notes: Notes, ticks_per_beat: int) -> np.ndarray:
    phase = (notes.onset % ticks_per_beat) * BEAT_BINS / ticks_per_beat
    return np.bincount(np.round(phase).astype(np.int64) % BEAT_BINS, minlength=BEAT_BINS).astype(np.float64)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance of two count histograms, normalised (NaN if either is empty)."""
    if a.sum() == 0 or b.sum() == 0:
        return math.nan
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def instruments_kept(continuation: Notes, primer: Notes) -> float:
    def classes(notes: Notes) -> list[str]:
        return [instrument_class(p, d) for p, d in zip(notes.program.tolist(), notes.is_drum.tolist())]

    if not len(continuation):
        return math.nan
    primer_classes = set(classes(primer))
    return float(np.mean([c in primer_classes for c in classes(continuation)]))


def comparison(part: Notes, other: Notes, ticks_per_beat: int) -> dict[str, float]:
    figures = {"pitch_class_distance": histogram_distance(pitch_class_histogram(part), pitch_class_histogram(other)),
               "onset_grid_distance": histogram_distance(onset_grid_histogram(part, ticks_per_beat),
                                                         onset_grid_histogram(other, ticks_per_beat)),
               "instruments_kept": instruments_kept(part, other)}
    return {key: _plain(value) for key, value in figures.items()}


def continuation_report(primer_rows: np.ndarray, continuation_rows: np.ndarray, real_rows: np.ndarray | None,
                        ticks_per_beat: int) -> dict:
    """The metrics of a sample: rows of the primer, of the model's continuation and of the song's real
    continuation (each continuation's first gap counted from the primer's last row; None: no song).

    A note sounding at the hand-over belongs to the primer. The real continuation is cut to the
    model's continuation's length in ticks (its notes ending later are cut there), so both parts
    cover the same stretch of music: from the hand-over to the continuation's last event."""
    song = np.concatenate([primer_rows, continuation_rows])
    handover = int(events.grid_ticks(primer_rows)[-1])
    notes = notes_of_rows(song)  # in the order of their note-on rows: the primer's come first
    model_notes = notes.select(np.arange(len(notes)) >= events.count_notes(primer_rows)).shifted(-handover)
    primer_notes = notes_of_rows(primer_rows)  # as the primer plays on its own (ended at the hand-over)
    length = max(int(events.grid_ticks(continuation_rows)[-1]) if len(continuation_rows) else 0, 1)
    report = {
        "ticks_per_beat": ticks_per_beat, "continuation_beats": length / ticks_per_beat,
        "primer": part_metrics(primer_notes, max(handover, 1), ticks_per_beat),
        "continuation": part_metrics(model_notes, length, ticks_per_beat),
        "continuation_vs_primer": comparison(model_notes, primer_notes, ticks_per_beat),
        "tempo": {"primer_bpm": last_bpm(primer_rows), "continuation_bpm": last_bpm(song),
                  "tempo_ratio": last_bpm(song) / last_bpm(primer_rows)},
    }
    if real_rows is not None:
        real_notes = real_continuation_notes(real_rows, length)
        report["real"] = part_metrics(real_notes, length, ticks_per_beat)
        report["real_vs_primer"] = comparison(real_notes, primer_notes, ticks_per_beat)
        report["continuation_vs_real"] = comparison(model_notes, real_notes, ticks_per_beat)
    return report


def real_continuation_notes(real_rows: np.ndarray, length: int) -> Notes:
    """The notes of the song after the cut that start by tick `length` (the continuation's last), cut there
    (as the continuation's notes still sounding at its end are)."""
    notes = notes_of_rows(real_rows)
    notes = notes.select(notes.onset <= length)
    notes.offset = np.minimum(notes.offset, length)
    return notes


def _plain(value):
    """A JSON-able number: numpy scalars to Python, NaN (nothing to measure) to None."""
    if isinstance(value, dict):
        return value
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value
