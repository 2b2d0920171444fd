"""prepare_store and Store on real dev files: contents, corrupt files, cache reuse and rebuild, atomicity."""
from __future__ import annotations

import json
import logging
import os
import struct

import mido
import numpy as np
import pytest

from midiformer.codec import events
from midiformer.common import ConfigError
from midiformer.data import corpus, store
from midiformer.data.store import Store, prepare_store
from tests.data.conftest import data_config


def stored_songs(s: Store) -> dict[str, np.ndarray]:
    """Every song of every split: relative path -> its event rows."""
    songs = {}
    for split in s.manifest["splits"]:
        rows, offsets = s.events(split), s.offsets(split)
        for i, name in enumerate(s.songs(split)):
            songs[name] = rows[offsets[i]:offsets[i + 1]]
    return songs


def test_store_holds_each_song_exactly_as_the_codec_encodes_it(small_store, small_files):
    songs = stored_songs(small_store)
    assert len(songs) == len(small_files)
    root = small_store.manifest["root"]
    for name, rows in songs.items():
        expected, _ = events.encode_song(os.path.join(root, name), ticks_per_beat=96)  # the default controls
        np.testing.assert_array_equal(rows, expected, err_msg=name)
        assert rows[0, 0] == events.START and rows[-1, 0] == events.END


def test_split_arrays_are_memmaps_with_consistent_offsets(small_store):
    for split in ("train", "val", "test"):
        rows, offsets = small_store.events(split), small_store.offsets(split)
        assert isinstance(rows, np.memmap) and rows.dtype == np.int16 and rows.shape[1] == len(events.FIELDS)
        assert offsets.dtype == np.int64 and offsets[0] == 0 and offsets[-1] == len(rows)
        assert np.all(np.diff(offsets) > 0)
        assert len(offsets) == len(small_store.songs(split)) + 1


def test_manifest_counts_add_up(small_store, small_files):
    m = small_store.manifest
    assert m["codec_version"] == events.CODEC_VERSION and m["settings"]["codec"] == events.codec_settings()
    assert m["files_found"] == m["files_ok"] == m["songs"] == len(small_files) and m["files_skipped"] == 0
    assert m["skipped"] == []
    for name in ("songs", "events", "notes"):
        assert m[name] == sum(split[name] for split in m["splits"].values())
    assert m["seconds"] == pytest.approx(sum(split["seconds"] for split in m["splits"].values()), abs=0.01)
    for split, counts in m["splits"].items():
        rows = small_store.events(split)
        assert counts["events"] == len(rows) and counts["notes"] == events.count_notes(rows)
    # chuggachugga.mid has a note-on that is never ended: the codec counts it (see tests/codec)
    assert m["oddities"]["unterminated_notes"] >= 1
    assert 0.5 * 3600 < m["seconds"] < 2 * 3600  # the 15 files hold about an hour of music


def write_corrupt_files(folder):
    good = (folder / "openmsx" / "tttheme2.mid").read_bytes()
    assert good[:4] == b"MThd" and good[14:18] == b"MTrk"
    corrupt = {
        "bad/empty.mid": b"",
        "bad/truncated.mid": good[: len(good) // 2],
        "bad/random.mid": np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "bad/text.mid": b"This is a text file that only has a MIDI name.\n",
        "bad/header_lies.mid": good[:4] + struct.pack(">I", 1000) + good[8:],  # MThd says 1000 bytes, not 6
        "bad/track_lies.MID": good[:18] + struct.pack(">I", 10**6) + good[22:],  # first MTrk claims 1 MB
    }
    for name, data in corrupt.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)
    silent = mido.MidiFile()  # a well-formed file without a single note
    silent.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    silent.save(folder / "bad" / "silent.midi")
    return set(corrupt) | {"bad/silent.midi"}


def test_corrupt_files_are_skipped_with_reasons_and_good_files_survive(corpus_dir, tmp_path, small_files):
    corrupt = write_corrupt_files(corpus_dir)
    m = Store(prepare_store(data_config(corpus_dir, tmp_path / "cache"))).manifest
    assert m["files_found"] == len(small_files) + len(corrupt)
    assert m["files_skipped"] == len(corrupt) and m["files_ok"] == m["songs"] == len(small_files)
    reasons = {entry["file"]: entry["reason"] for entry in m["skipped"]}
    assert set(reasons) == corrupt
    for name, reason in reasons.items():
        assert reason and "\n" not in reason and str(corpus_dir) not in reason, (name, reason)
    assert reasons["bad/silent.midi"] == "no notes"
    assert "MThd" in reasons["bad/text.mid"] and "ends" in reasons["bad/truncated.mid"]


def test_any_error_in_the_codec_skips_only_that_file(corpus_dir, tmp_path, monkeypatch, small_files):
    real_encode = events.encode_song

    def encode_that_breaks_on_one_file(path, **codec):
        if path.name == "tttheme2.mid":
            raise ZeroDivisionError("division by zero\nsecond line")
        return real_encode(path, **codec)

    monkeypatch.setattr(events, "encode_song", encode_that_breaks_on_one_file)
    m = Store(prepare_store(data_config(corpus_dir, tmp_path / "cache"))).manifest
    assert m["skipped"] == [{"file": "openmsx/tttheme2.mid", "reason": "ZeroDivisionError: division by zero"}]
    assert m["songs"] == len(small_files) - 1


def test_a_folder_without_midi_files_is_a_one_line_error_naming_it(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("no music here")
    with pytest.raises(ConfigError, match=f"data.root={tmp_path / 'empty'}: no MIDI files") as error:
        prepare_store(data_config(tmp_path / "empty", tmp_path / "cache"))
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="not a folder"):
        prepare_store(data_config(tmp_path / "missing", tmp_path / "cache"))
    with pytest.raises(ConfigError, match="data.root is required"):
        prepare_store(data_config("???", tmp_path / "cache"))


def test_same_inputs_reuse_the_store_and_say_so(corpus_dir, tmp_path, monkeypatch, caplog):
    cfg = data_config(corpus_dir, tmp_path / "cache")
    first = prepare_store(cfg)
    monkeypatch.setattr(corpus, "encode_file", lambda job: pytest.fail("encoded again instead of reusing"))
    with caplog.at_level(logging.INFO, logger="midiformer.data.store"):
        assert prepare_store(cfg) == first
    assert "reusing the prepared store" in caplog.text and str(first) in caplog.text


@pytest.mark.parametrize("change", ["touch a file", "add a file", "remove a file", "ticks_per_beat", "controls",
                                    "pitch_bend", "splits", "codec version"])
def test_a_change_of_files_or_codec_settings_rebuilds(change, corpus_dir, tmp_path, monkeypatch):
    cfg = data_config(corpus_dir, tmp_path / "cache")
    first = prepare_store(cfg)
    a_file = corpus_dir / "openmsx" / "tttheme2.mid"
    if change == "touch a file":
        os.utime(a_file, ns=(a_file.stat().st_atime_ns, a_file.stat().st_mtime_ns + 10**9))
    elif change == "add a file":
        (corpus_dir / "copy.mid").write_bytes(a_file.read_bytes())
    elif change == "remove a file":
        a_file.unlink()
    elif change == "ticks_per_beat":
        cfg.codec.ticks_per_beat = 48
    elif change == "controls":
        cfg.codec.controls = [64]
    elif change == "pitch_bend":
        cfg.codec.pitch_bend = False
    elif change == "splits":
        cfg.splits = {"train": 0.8, "val": 0.1, "test": 0.1}
    else:
        monkeypatch.setattr(events, "CODEC_VERSION", events.CODEC_VERSION + "-changed")
    second = prepare_store(cfg)
    assert second != first and (second / store.MANIFEST).is_file() and (first / store.MANIFEST).is_file()
    assert Store(second).manifest["settings"]["codec"] == events.codec_settings(**cfg.codec)


def test_an_interrupted_prepare_leaves_no_store_that_looks_complete(corpus_dir, tmp_path, monkeypatch):
    cfg = data_config(corpus_dir, tmp_path / "cache")
    real_encode_file, calls = corpus.encode_file, []

    def interrupted_after_five_files(job):
        calls.append(job)
        if len(calls) == 6:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the corpus
        return real_encode_file(job)

    monkeypatch.setattr(corpus, "encode_file", interrupted_after_five_files)
    with pytest.raises(KeyboardInterrupt):
        prepare_store(cfg)
    stores = tmp_path / "cache" / "stores"
    assert list(stores.iterdir()) == []  # the temporary folder is removed, nothing was renamed into place
    # A harder kill leaves the temporary folder behind: it is never taken for a store.
    monkeypatch.setattr(corpus, "encode_file", real_encode_file)
    path = prepare_store(cfg)
    leftover = stores / f".{path.name}.tmp-999999"
    leftover.mkdir()
    (leftover / "train_events.npy").write_bytes(b"partial")
    with pytest.raises(FileNotFoundError, match="not a prepared store"):
        Store(leftover)
    assert json.loads((path / store.MANIFEST).read_text())["songs"] == len(Store(path).songs("train")) + len(
        Store(path).songs("val")) + len(Store(path).songs("test"))


def test_a_store_folder_without_manifest_is_rebuilt(corpus_dir, tmp_path):
    cfg = data_config(corpus_dir, tmp_path / "cache")
    path = prepare_store(cfg)
    (path / store.MANIFEST).unlink()  # as if the manifest had never been written
    with pytest.raises(FileNotFoundError):
        Store(path)
    assert prepare_store(cfg) == path and Store(path).manifest["songs"] > 0


@pytest.mark.slow  # a pool of worker processes: 5-12 s on 2 cores
def test_parallel_workers_write_the_same_store_as_one(small_store, small_files, tmp_path):
    root = small_store.manifest["root"]
    parallel = Store(prepare_store(data_config(root, tmp_path / "cache", num_workers=2)))
    assert parallel.manifest["skipped"] == [] and parallel.path.name == small_store.path.name
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(parallel.events(split), small_store.events(split))
        np.testing.assert_array_equal(parallel.offsets(split), small_store.offsets(split))
        assert parallel.songs(split) == small_store.songs(split)


def test_manifest_field_counts_equal_a_count_of_the_rows(small_store):
    for split in small_store.manifest["splits"]:
        rows = np.asarray(small_store.events(split))
        counts = small_store.field_counts(split)
        for column, field in enumerate(events.FIELDS):
            expected = np.zeros(events.VOCAB[field], np.int64)
            for row in rows:
                if events.APPLIES[row[0], column]:
                    expected[row[column]] += 1
            np.testing.assert_array_equal(counts[field], expected, err_msg=f"{split} {field}")
        assert counts["type"].sum() == len(rows) and counts["type"][events.NOTE_ON] == events.count_notes(rows)
        targets, n_events, n_notes = small_store.target_counts(split)  # every row but the first
        assert (n_events, n_notes) == (max(len(rows) - 1, 0), events.count_notes(rows[1:]))
        np.testing.assert_array_equal(targets["type"], np.bincount(rows[1:, 0], minlength=len(events.TYPES)))


def test_the_manifest_stays_readable_and_old_stores_are_not_reused(small_store):
    text = (small_store.path / store.MANIFEST).read_text()
    assert len(text.splitlines()) < 200  # each field's counts on one line, not one number a line
    assert json.loads(text)["store_format"] == store.STORE_FORMAT
    old = dict(small_store.manifest)
    old["splits"] = {name: {k: v for k, v in split.items() if k != "field_counts"} for name, split in old["splits"].items()}
    stale = Store.__new__(Store)
    stale.path, stale.manifest = small_store.path, old
    with pytest.raises(FileNotFoundError, match="without field counts.*prepare it again"):
        stale.field_counts("train")


def test_velocity_levels_round_note_on_velocities_only_to_miditok_levels(corpus_dir, tmp_path):
    lossless = Store(prepare_store(data_config(corpus_dir, tmp_path / "cache")))
    rounded = Store(prepare_store(data_config(corpus_dir, tmp_path / "cache", velocity_levels=32)))
    assert rounded.path != lossless.path and rounded.manifest["settings"]["velocity_levels"] == 32
    velocity, type_ = events.COLUMN["velocity"], events.COLUMN["type"]
    levels = corpus.velocity_bins(32)
    assert levels[0] == 3 and levels[-1] == 127 and len(levels) == 32
    before, after = stored_songs(lossless), stored_songs(rounded)
    assert before.keys() == after.keys()
    for name in before:
        old, new = np.asarray(before[name]), np.asarray(after[name])
        is_note_on = old[:, type_] == events.NOTE_ON
        # the nearest level, the upper one on a tie (MidiTok's rule); every other column and row unchanged
        distance = np.abs(old[is_note_on, velocity][:, None] - levels[None, :])
        assert np.isin(new[is_note_on, velocity], levels).all(), name
        assert (np.abs(new[is_note_on, velocity] - old[is_note_on, velocity]) == distance.min(axis=1)).all(), name
        np.testing.assert_array_equal(np.delete(new, velocity, axis=1), np.delete(old, velocity, axis=1), err_msg=name)
        np.testing.assert_array_equal(new[~is_note_on], old[~is_note_on], err_msg=name)  # tempo rows keep their bits
    assert corpus.round_velocities(np.array([[events.NOTE_ON, 0, 0, 0, 60, 5]]), 32)[0, velocity] == 7  # tie: up


@pytest.mark.parametrize("levels", [0, 128, 2.5, True])
def test_a_bad_velocity_levels_is_a_one_line_error(levels, corpus_dir, tmp_path):
    with pytest.raises(ConfigError, match="data.velocity_levels="):
        prepare_store(data_config(corpus_dir, tmp_path / "cache", velocity_levels=levels))
