"""The sampler: cached and uncached paths agree, every sampled event is valid, options do what they say."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from midiformer.codec import events, grammar, midi, to_midi
from midiformer.codec.notes import pair_notes
from midiformer.common import ConfigError
from midiformer.generate import primer, sampling
from midiformer.generate.grammar import parse_instruments
from midiformer.model import MidiGPT
from tests.generate.conftest import CONTEXT
from tests.model.conftest import tiny_config

TYPE, TIME, CHANNEL, INSTRUMENT, NOTE, VELOCITY, DURATION = range(len(events.FIELDS))


def random_model(**overrides) -> MidiGPT:
    """A tiny untrained model: it tries every kind of event."""
    torch.manual_seed(0)
    return MidiGPT(tiny_config(**overrides)).eval()


def run(model, start, seed: int = 0, allow_end: bool = False, **options) -> list[sampling.Sample]:
    """Samples that run to n_events (unless allow_end=True: the model may end them)."""
    return sampling.sample(model, start, sampling.Settings(allow_end=allow_end, **options), seed=seed)


@pytest.mark.parametrize("which", ["trained parallel, learned positions", "random cascade, rope",
                                   "random cascade_relative, rope_time", "random cascade_cache, rope_time"])
def test_cached_and_uncached_generation_agree(which, trained_model, primer_song):
    heads, pos = which.removeprefix("random ").split(", ")
    model = trained_model if which.startswith("trained") else random_model(heads=heads, pos=pos)
    start = primer.load_primer(primer_song, 96, seconds=1.5)
    # 250 events after the primer in a context of 64 or 128: the window jumps several times.
    cached = run(model, start, n_events=250, num_samples=3, kv_cache=True)
    uncached = run(model, start, n_events=250, num_samples=3, kv_cache=False)
    assert len(start) + 250 > 2 * model.max_seq_len
    for a, b in zip(cached, uncached):
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
        assert a.sounding == b.sounding
    assert not np.array_equal(cached[0].rows, cached[1].rows)  # the samples of a batch differ


@pytest.mark.slow
def test_samples_the_model_ends_stop_there_in_both_paths(trained_model, primer_song):
    start = primer.load_primer(primer_song, 96, seconds=1.5)
    cached, uncached = (run(trained_model, start, n_events=300, num_samples=4, allow_end=True, kv_cache=kv)
                        for kv in (True, False))
    ended = [s for s in cached if s.rows[-1, TYPE] == events.END]
    assert ended and len({len(s.rows) for s in cached}) > 1  # the batch ran on past the samples that ended
    for a, b in zip(cached, uncached):
        np.testing.assert_array_equal(a.rows, b.rows)
        assert (a.rows[:-1, TYPE] != events.END).all()
        sounding = replay(start, a.rows)  # a stopped sample's state stopped with it
        assert sorted(a.sounding) == sorted((c, p) for c, p in zip(*sounding.nonzero()) for _ in range(sounding[c, p]))
    assert all(events.END not in s.rows[:, TYPE] for s in run(trained_model, start, n_events=300, num_samples=4))


def replay(start: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """OPEN notes sounding after start + rows, checking on the way that every note_off ends one."""
    sounding = np.zeros((16, 128), int)
    for i, r in enumerate(np.concatenate([start, rows])):
        if r[TYPE] == events.NOTE_ON:
            sounding[r[CHANNEL], r[NOTE]] += r[DURATION] == events.OPEN
        elif r[TYPE] == events.NOTE_OFF:
            assert sounding[r[CHANNEL], r[NOTE]] > 0, f"row {i}: note_off of a silent note"
            sounding[r[CHANNEL], r[NOTE]] -= 1
    return sounding


@pytest.mark.parametrize("heads", ["parallel", "cascade"])
def test_every_sampled_event_is_valid(heads, primer_song, tmp_path):
    """A random model, so every value the masks allow is drawn. Without durations every note is OPEN, so
    note_off rows (and their masks) are common; test_sampled_durations_are_the_notes_lengths has the rest."""
    model = random_model(heads=heads)
    start = primer.load_primer(primer_song, 96, seconds=1.0, durations=False)
    samples = run(model, start, n_events=400, num_samples=4, controls=events.DEFAULT_CONTROLS, durations=False)
    all_rows = np.concatenate([s.rows for s in samples])
    for name, column in zip(events.FIELDS, all_rows.T):
        assert column.min() >= 0 and column.max() < events.VOCAB[name]
    applies = events.APPLIES[all_rows[:, TYPE]]
    assert (all_rows[~applies] == 0).all()  # fields that do not apply are 0, as in training
    types = all_rows[:, TYPE]
    assert events.START not in types
    assert (all_rows[types == events.TIME_SHIFT, TIME] == events.MAX_TIME_SHIFT).all()
    assert (all_rows[types == events.NOTE_ON, VELOCITY] >= 1).all()
    for kind in range(events.END + 1, len(events.TYPES)):  # END: these samples run to n_events
        assert (types == kind).sum() > 20, events.TYPES[kind]  # the masks leave every type possible
    assert set(all_rows[types == events.CONTROL, INSTRUMENT].tolist()) == set(events.DEFAULT_CONTROLS)
    for i, sample in enumerate(samples):
        rows, logprobs = sampling.closed(sample)
        assert (replay(start, rows) == 0).all()  # every note closed, and only sounding notes were ended
        assert rows[-1, TYPE] == events.END and (rows[:-1, TYPE] != events.END).all()
        grammar.check(np.concatenate([start, rows]), song=True, controls=events.DEFAULT_CONTROLS, pitch_bend=True)
        sampled = len(sample.rows) - (sample.rows[-1, TYPE] in (events.END, events.TIME_SHIFT))  # closed() keeps
        assert np.isfinite(logprobs[:sampled]).all() and (logprobs[:sampled] < 0).all()
        path = tmp_path / f"{i}.mid"
        to_midi.decode(np.concatenate([start, rows]), path)
        notes, _, stats = pair_notes(midi.read_midi(path))
        assert stats["orphan_note_offs"] == 0 and stats["unterminated_notes"] == 0
        assert stats["notes"] == (np.concatenate([start, rows])[:, TYPE] == events.NOTE_ON).sum()


@pytest.mark.slow
def test_instruments_restrict_what_the_model_plays(primer_song):
    model = random_model()
    start = primer.start_row()
    free = run(model, start, n_events=300, num_samples=2)
    introduced = lambda rows: rows[np.isin(rows[:, TYPE], (events.NOTE_ON, events.PROGRAM))]  # noqa: E731
    assert len(np.unique(np.concatenate([introduced(s.rows)[:, INSTRUMENT] for s in free]))) > 10
    for sample in run(model, start, n_events=300, num_samples=2, instruments=[0, 33]):
        rows = introduced(sample.rows)
        assert len(rows) > 20 and set(rows[:, INSTRUMENT].tolist()) <= {0, 33}
        assert events.DRUM_CHANNEL not in rows[:, CHANNEL]
    for sample in run(model, start, n_events=200, num_samples=2, instruments=["drums"]):
        rows = introduced(sample.rows)
        assert len(rows) > 10 and (rows[:, CHANNEL] == events.DRUM_CHANNEL).all()


@pytest.mark.parametrize("bad", [["banjo"], [128], [-1], []])
def test_an_unknown_instrument_is_refused(bad):
    with pytest.raises(ConfigError, match="instrument"):
        parse_instruments(bad)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_samples_and_another_seed_others():
    model, start = random_model(), primer.start_row()
    a, b, c = (run(model, start, n_events=60, seed=seed)[0].rows for seed in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_top_k_top_p_and_temperature_shape_one_field():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    everything = torch.ones_like(logits, dtype=torch.bool)
    def kept(**how) -> torch.Tensor:
        return torch.isfinite(sampling.shaped_logits(logits, everything, sampling.FieldSampling(**how)))

    assert kept(top_k=2).tolist() == [[True, True, False, False, False]]
    probs = logits.softmax(-1)[0]  # 0.61, 0.22, 0.14, 0.08, 0.03
    assert kept(top_p=float(probs[0]) - 0.01).tolist() == [[True, False, False, False, False]]
    assert kept(top_p=float(probs[0] + probs[1]) + 0.01).tolist() == [[True, True, True, False, False]]
    not_first = torch.tensor([[False, True, True, True, True]])
    masked = sampling.shaped_logits(logits, not_first, sampling.FieldSampling(top_k=1))
    assert torch.isfinite(masked).tolist() == [[False, True, False, False, False]]  # top-k among allowed values
    hot = sampling.shaped_logits(logits, everything, sampling.FieldSampling(temperature=2.0))
    torch.testing.assert_close(hot, logits / 2)


def test_top_k_1_everywhere_is_greedy_whatever_the_seed(trained_model, primer_song):
    start = primer.load_primer(primer_song, 96, seconds=1.0)
    greedy = [sampling.FieldSampling(top_k=1) for _ in events.FIELDS]
    a, b = (run(trained_model, start, seed=seed, n_events=60, fields=greedy)[0].rows for seed in (0, 1))
    np.testing.assert_array_equal(a, b)
    c, d = (run(trained_model, start, seed=seed, n_events=60)[0].rows for seed in (0, 1))
    assert not np.array_equal(c, d)


def test_sampling_stops_after_the_seconds_asked_for(trained_model, primer_song):
    start = primer.load_primer(primer_song, 96, seconds=1.0)
    for sample in run(trained_model, start, n_events=2000, num_samples=3, seconds=2.0, allow_end=True):
        rows = sample.rows
        if rows[-1, TYPE] != events.END:
            assert events.seconds(np.concatenate([start, rows])) - events.seconds(start) >= 2.0
        assert events.seconds(np.concatenate([start, rows[:-1]])) - events.seconds(start) < 2.0


def test_a_sampled_end_closes_the_notes_at_its_time():
    rows = np.zeros((3, len(events.FIELDS)), np.int64)
    rows[:, TYPE] = events.NOTE_ON, events.NOTE_ON, events.END
    rows[:2, CHANNEL], rows[:2, NOTE], rows[:2, VELOCITY], rows[2, TIME] = 2, (60, 64), 80, 48
    sample = sampling.Sample(rows, np.full((3, len(events.FIELDS)), -0.5, np.float32), [(2, 60), (2, 64)])
    closed, logprobs = sampling.closed(sample)
    assert closed[:, TYPE].tolist() == [events.NOTE_ON, events.NOTE_ON, events.NOTE_OFF, events.NOTE_OFF, events.END]
    assert closed[2:, TIME].tolist() == [48, 0, 0]  # the notes end where the model ended the song
    assert np.isnan(logprobs[2:4]).all() and logprobs[-1] == pytest.approx(-0.5 * len(events.FIELDS))


def test_a_primer_longer_than_the_context_is_refused(primer_song):
    model = random_model()
    long_primer = primer.load_primer(primer_song, 96, n_events=CONTEXT)
    with pytest.raises(ConfigError, match="more than the context"):
        run(model, long_primer, n_events=5)


def test_a_model_of_the_seed_codec_samples_none_of_the_new_types(primer_song):
    model = random_model()
    samples = run(model, primer.start_row(), n_events=300, num_samples=2, controls=(), pitch_bend=False)
    types = np.concatenate([s.rows for s in samples])[:, TYPE]
    assert not np.isin(types, (events.CONTROL, events.PITCH_BEND)).any() and (types == events.TEMPO).sum() > 5
    for sample in samples:
        rows, _ = sampling.closed(sample)
        grammar.check(np.concatenate([primer.start_row(), rows]), song=True, controls=[], pitch_bend=False)


def test_sampled_durations_are_the_notes_lengths(primer_song, tmp_path):
    """With durations a note-on's duration ends its note: decoded, each note lasts duration - 1 steps
    (or until the song's end), and the few OPEN ones end at note_off rows."""
    model = random_model(heads="cascade")
    start = primer.load_primer(primer_song, 96, seconds=1.0)
    (sample,) = run(model, start, n_events=300, num_samples=1)
    rows, _ = sampling.closed(sample)
    song = np.concatenate([start, rows])
    grammar.check(song, song=True)
    on = song[:, TYPE] == events.NOTE_ON
    assert (song[on, DURATION] != events.OPEN).sum() > 0.9 * on.sum()
    to_midi.decode(song, tmp_path / "sample.mid")
    notes = pair_notes(midi.read_midi(tmp_path / "sample.mid"))[0]
    assert len(notes) == on.sum()
    ticks, end = events.grid_ticks(song), int(events.grid_ticks(song)[-1])
    closed = on & (song[:, DURATION] != events.OPEN)
    expected = sorted(zip(ticks[closed].tolist(), np.minimum(ticks[closed] + song[closed, DURATION] - 1, end).tolist(),
                          song[closed, NOTE].tolist()))
    found = sorted(zip(notes[:, 0].tolist(), notes[:, 1].tolist(), notes[:, 3].tolist()))
    assert set(expected) <= set(found)
