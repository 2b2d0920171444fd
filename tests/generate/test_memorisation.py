"""The memorisation check on a real store (the OpenMSX songs of the dev corpus): it finds a passage copied
from a training song, exactly as long as it is, and not a random one or a held-out song's."""
from __future__ import annotations

import json

import numpy as np
import pytest

from midiformer.codec import events
from midiformer.data.store import Store, prepare_store
from midiformer.generate.memorisation import MIN_RUN, MemorisationIndex, note_tokens
from tests.train.conftest import TINY, compose_config


@pytest.fixture(scope="module")
def store(tmp_path_factory, dev_data) -> Store:
    cfg = compose_config(*TINY, f"data.cache_dir={tmp_path_factory.mktemp('cache')}", "data.splits.train=0.8",
                         "data.splits.val=0.1", "data.splits.test=0.1")
    return Store(prepare_store(cfg.data))


@pytest.fixture(scope="module")
def index(store) -> MemorisationIndex:
    return MemorisationIndex(store.path)


def song_rows(store: Store, split: str, i: int) -> np.ndarray:
    offsets = store.offsets(split)
    return np.asarray(store.events(split)[offsets[i]:offsets[i + 1]])


def random_tokens(rng, n: int) -> np.ndarray:
    """Note tokens of a random melody: random pitches on random sixteenth gaps (nothing like the corpus)."""
    rows = np.zeros((n, len(events.FIELDS)), np.int64)
    rows[:, 0], rows[:, 1] = events.NOTE_ON, rng.integers(1, 8, n) * 24 + 1
    rows[:, 2], rows[:, 4], rows[:, 5] = 0, rng.integers(20, 110, n), 80
    return note_tokens(rows)


def test_a_copied_training_passage_is_found_and_a_random_one_is_not(index, store):
    rng = np.random.default_rng(0)
    training = note_tokens(song_rows(store, "train", 2))
    copied = training[100:160]  # 60 consecutive notes of a training song ...
    query = np.concatenate([random_tokens(rng, 40), copied, random_tokens(rng, 40)])  # ... inside new music
    report = index.check(query)
    assert report["longest_run"] == 60
    assert report["share_in_runs"] == pytest.approx(60 / 140)
    random_report = index.check(random_tokens(rng, 300))
    assert random_report["longest_run"] < MIN_RUN and random_report["share_in_runs"] == 0.0


def test_every_run_from_the_exact_length_on_is_measured_exactly_wherever_it_starts(index, store):
    rng = np.random.default_rng(1)
    training = note_tokens(song_rows(store, "train", 5))
    length = index.exact_from  # 15 with ngram 8, stride 8: the shortest run always found
    for start in range(200, 200 + index.stride):  # every phase against the indexed positions
        query = np.concatenate([random_tokens(rng, 10), training[start:start + length], random_tokens(rng, 10)])
        assert index.check(query)["longest_run"] == length, start


def test_a_held_out_song_shares_only_short_runs_with_the_training_songs(index, store):
    assert len(store.offsets("test")) > 1
    report = index.check(note_tokens(song_rows(store, "test", 0)))
    assert report["notes"] > 200 and report["share_in_runs"] < 0.2


def test_the_index_is_built_once_and_cached_in_the_store_folder(index, store):
    info = index.folder / "index.json"
    assert index.folder.parent == store.path and info.is_file()
    built = info.stat().st_mtime_ns
    again = MemorisationIndex(store.path)
    assert info.stat().st_mtime_ns == built and again.info == json.loads(info.read_text())
    assert again.info["notes"] == sum(events.count_notes(song_rows(store, "train", i))
                                      for i in range(len(store.offsets("train")) - 1))


def test_a_continuation_without_a_note_has_no_copied_run(index, store):
    """A sample may hold no note-on at all (an untrained model's continuation of a short primer)."""
    rows = song_rows(store, "train", 0)
    silent = rows[rows[:, events.COLUMN["type"]] != events.NOTE_ON][:50]
    assert len(note_tokens(silent)) == 0
    report = index.check(note_tokens(silent))
    assert report["longest_run"] == 0 and report["share_in_runs"] == 0.0
