"""Finding MIDI files and assigning splits: any case, any depth; a split that never moves."""
from __future__ import annotations

from collections import Counter

import pytest

from midiformer.common import ConfigError
from midiformer.data.corpus import check_splits, find_midi_files, split_of, worker_count
from midiformer.data.store import Store, prepare_store
from tests.conftest import DEV_DATA, dev_files
from tests.data.conftest import copy_corpus, data_config

SPLITS = {"train": 0.9, "val": 0.05, "test": 0.05}


def test_finds_mid_and_midi_files_in_any_case_at_any_depth(tmp_path):
    for name in ("a.mid", "b.MID", "deep/er/c.midi", "deep/D.MiDi", "notes.txt", "e.mid.bak", "f.kar"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.mid").mkdir()  # a folder with a MIDI name is not a file
    assert find_midi_files(tmp_path) == ["a.mid", "b.MID", "deep/D.MiDi", "deep/er/c.midi"]


def test_finds_every_dev_file():
    assert find_midi_files(DEV_DATA) == [f.relative_to(DEV_DATA).as_posix() for f in dev_files()]
    assert len(find_midi_files(DEV_DATA)) == 473


def test_split_shares_follow_the_config_on_the_dev_corpus(dev_data):
    counts = Counter(split_of(name, SPLITS) for name in find_midi_files(dev_data))
    assert set(counts) == {"train", "val", "test"}
    assert 0.85 < counts["train"] / 473 < 0.95 and 8 <= counts["val"] <= 40 and 8 <= counts["test"] <= 40
    halves = Counter(split_of(name, {"a": 0.5, "b": 0.5}) for name in find_midi_files(dev_data))
    assert 200 < halves["a"] < 273


def test_split_depends_on_the_relative_path_only():
    assert split_of("pop909/pop909_001.mid", SPLITS) == split_of("pop909/pop909_001.mid", dict(SPLITS))
    assert split_of("x.mid", {"train": 1.0, "val": 0.0}) == "train"
    assert split_of("x.mid", {"val": 0.0, "test": 1.0}) == "test"


@pytest.mark.parametrize("splits", [{}, {"train": 0.9, "val": 0.2}, {"train": 1.1, "val": -0.1}])
def test_bad_split_shares_are_a_config_error(splits):
    with pytest.raises(ConfigError, match="data.splits"):
        check_splits(splits)


def test_bad_worker_count_is_a_config_error():
    with pytest.raises(ConfigError, match="data.num_workers=0"):
        worker_count(0, 10)
    assert worker_count(None, 1) == 1 and worker_count(8, 3) == 3


def test_adding_files_never_moves_an_existing_song(small_files, tmp_path):
    even = {"train": 0.5, "val": 0.25, "test": 0.25}  # so that every split holds songs before and after
    root = copy_corpus(small_files[:8], tmp_path / "midi")
    before = Store(prepare_store(data_config(root, tmp_path / "cache", splits=even)))
    copy_corpus(small_files[8:], root)  # more files arrive, some sorting before the old ones
    after = Store(prepare_store(data_config(root, tmp_path / "cache", splits=even)))
    assert after.path != before.path and after.manifest["songs"] == len(small_files)
    assert all(before.songs(split) for split in even)
    for split in even:
        assert set(before.songs(split)) <= set(after.songs(split))
