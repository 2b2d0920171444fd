"""make bench-quality: the shared denominators against mido, the scoring windows, and one tiny run end to end."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import torch
from torch import nn

from midiformer.codec import events
from midiformer.data.corpus import split_of
from tests.conftest import DEV_DATA, REPO

SCRIPT = REPO / "benchmarks" / "bench_quality.py"
SPLITS = {"train": 0.9, "val": 0.05, "test": 0.05}
# type 0 drums, several tempos (31), no tempo event at all, a note-on never ended, a program change mid-song
DENOMINATOR_FILES = ["groove/drummer1_session1_29_latin-samba_116_fill_4-4.mid", "openmsx/midnight_snow_run.mid",
                     "openmsx/ttsong_iii_imuh3.mid", "openmsx/chuggachugga.mid", "openmsx/tttheme2.mid",
                     "pop909/pop909_331.mid"]


@pytest.mark.parametrize("name", DENOMINATOR_FILES)
def test_notes_and_seconds_agree_with_mido(name, dev_data):
    from quality_data import notes_and_seconds

    midi_file = mido.MidiFile(dev_data / name)
    note_ons = sum(message.type == "note_on" and message.velocity > 0 for track in midi_file.tracks for message in track)
    notes, seconds = notes_and_seconds(dev_data / name)
    assert notes == note_ons > 0
    assert seconds == pytest.approx(midi_file.length, rel=1e-9)


def test_matched_resolution_is_miditok_default_so_its_rows_are_trained_once():
    """Table (b) reuses MidiTok's default sides only because TokenizerConfig() is 8 positions per beat and
    32 velocities: if MidiTok's defaults change, this says so."""
    from bench_quality import MIDITOK_DEFAULT_GRID, MIDITOK_DEFAULT_VELOCITIES, parse_args, plan_sides
    from miditok import TokenizerConfig

    defaults = TokenizerConfig()
    assert (max(defaults.beat_res.values()), defaults.num_velocities) == (MIDITOK_DEFAULT_GRID, MIDITOK_DEFAULT_VELOCITIES)
    sides, tables = plan_sides(parse_args(["--no-full-resolution"]))
    assert [s["name"] for s in sides] == ["midiformer@96", "REMI@default", "MIDILike@default", "midiformer@8x32"]
    assert tables == {"default": ["midiformer@96", "REMI@default", "MIDILike@default"],
                      "matched": ["midiformer@8x32", "REMI@default", "MIDILike@default"]}
    sides, tables = plan_sides(parse_args(["--matched-grid", "16", "--matched-velocities", "64", "--codecs", "REMI",
                                           "--no-full-resolution"]))
    matched = next(s for s in sides if s["name"] == "REMI@16x64")
    assert matched["options"] == {"use_programs": True, "beat_res": {(0, 4): 16, (4, 12): 8}, "num_velocities": 64}
    assert tables["matched"] == ["midiformer@16x64", "REMI@16x64"]


def test_full_resolution_table_puts_miditok_on_midiformers_grid_and_reuses_the_lossless_side():
    """Table (d): MidiTok at 96 positions per beat and every velocity, against the very midiformer side of (a)."""
    from bench_quality import parse_args, plan_sides
    from quality_data import make_tokenizer

    sides, tables = plan_sides(parse_args([]))
    assert [s["name"] for s in sides] == ["midiformer@96", "REMI@default", "MIDILike@default", "midiformer@8x32",
                                          "REMI@96x127", "MIDILike@96x127"]
    assert tables["full"] == ["midiformer@96", "REMI@96x127", "MIDILike@96x127"]
    remi = next(s for s in sides if s["name"] == "REMI@96x127")
    assert remi["options"] == {"use_programs": True, "beat_res": {(0, 4): 96, (4, 12): 48}, "num_velocities": 127}
    vocab, default_vocab = make_tokenizer("REMI", remi["options"]).vocab, make_tokenizer("REMI", {"use_programs": True}).vocab
    assert {f"Velocity_{v}" for v in range(1, 128)} <= set(vocab)  # every MIDI velocity is a token of its own
    positions = lambda vocab: sum(name.startswith("Position_") for name in vocab)  # noqa: E731
    assert positions(vocab) == 96 // 8 * positions(default_vocab)  # the longest bar, at 96 positions per beat, not 8
    assert "Duration_0.1.96" in vocab  # durations in 96ths of a beat


class Bigram(nn.Module):
    """Logits of the next token from the current one only: its exact code length needs no windows."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table(tokens)


@pytest.mark.parametrize("length", [2, 9, 16, 17, 40])
def test_scoring_predicts_every_token_but_the_first_once(length):
    from quality_sides import stream_nats

    torch.manual_seed(0)
    model, tokens = Bigram(7), np.random.default_rng(length).integers(0, 7, size=length)
    log_p = torch.log_softmax(model.table.weight.double(), dim=-1)
    exact = -sum(log_p[a, b].item() for a, b in zip(tokens[:-1], tokens[1:]))
    assert stream_nats(model, tokens, context=8, batch=3, device=torch.device("cpu")) == pytest.approx(exact, rel=1e-9)


def tiny_corpus(folder):
    """A training folder whose store has train, val and test songs (the split hashes the relative path):
    small real files of three sources, and a broken file that lands in the test split."""
    by_split = {}
    for path in sorted(DEV_DATA.rglob("*.mid"), key=lambda p: p.stat().st_size):
        name = path.relative_to(DEV_DATA).as_posix()
        by_split.setdefault((split_of(name, SPLITS), path.parent.name), []).append(name)
    wanted = {("train", "groove"): 3, ("train", "openmsx"): 1, ("train", "pop909"): 1, ("val", "groove"): 1,
              ("test", "groove"): 1, ("test", "pop909"): 1}
    picked = [name for key, count in wanted.items() for name in by_split[key][:count]]
    for name in picked:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(DEV_DATA / name, folder / name)
    broken = next(f"broken/not_midi_{i}.mid" for i in range(1000) if split_of(f"broken/not_midi_{i}.mid", SPLITS) == "test")
    (folder / broken).parent.mkdir()
    (folder / broken).write_bytes(b"RIFF this is not a Standard MIDI File")
    return picked, broken


@pytest.mark.slow
def test_bench_quality_runs_end_to_end_on_a_tiny_configuration(dev_data, tmp_path):
    picked, broken = tiny_corpus(tmp_path / "midi")
    out = tmp_path / "quality.json"
    command = [sys.executable, str(SCRIPT), "--train", str(tmp_path / "midi"), "--steps", "2", "--layers", "1",
               "--d-model", "16", "--heads", "2", "--context", "32", "--batch", "2", "--warmup", "1", "--threads", "2",
               "--work-dir", str(tmp_path / "work"), "--out", str(out), "--override", "model.heads=cascade"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=script_env())
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    held_out = report["held_out"]
    test_files = [name for name in picked if split_of(name, SPLITS) == "test"]
    assert sorted(held_out["per_file"]) == sorted(test_files) and list(held_out["excluded"]) == [broken]
    notes = sum(mido_note_ons(dev_data / name) for name in test_files)
    seconds = sum(mido.MidiFile(dev_data / name).length for name in test_files)
    assert held_out["notes"] == notes and held_out["seconds"] == pytest.approx(seconds, rel=1e-9)

    sides = report["sides"]
    assert report["tables"]["default"] == ["midiformer@96", "REMI@default", "MIDILike@default"]
    assert report["tables"]["matched"] == ["midiformer@8x32", "REMI@default", "MIDILike@default"]
    assert report["tables"]["full"] == ["midiformer@96", "REMI@96x127", "MIDILike@96x127"]
    assert set(sides) == {name for names in report["tables"].values() for name in names}
    for name, side in sides.items():
        assert (side["notes"], side["seconds"]) == (notes, held_out["seconds"]), name  # one denominator for all
        for key in ("bits_per_note", "bits_per_second", "unigram_bits_per_note", "unigram_bits_per_second", "per_note"):
            assert math.isfinite(side[key]) and side[key] > 0, (name, key)
        assert side["bits_per_note"] * notes == pytest.approx(side["total_bits"])
        assert side["train_files"] == len([n for n in picked if split_of(n, SPLITS) == "train"]), name
    for name in report["tables"]["default"][:1] + report["tables"]["matched"][:1]:
        side = sides[name]
        assert side["notes_coded"] == notes  # midiformer codes every note the reader counts
        assert side["overrides"] == ["model.heads=cascade"]
        assert set(side["bits_per_event_by_field"]) == set(events.FIELDS)
        assert sum(side["bits_per_event_by_field"].values()) * side["targets"] == pytest.approx(side["total_bits"])
    assert sides["midiformer@8x32"]["resolution"] == {"ticks_per_beat": 8, "velocity_levels": 32}
    # (c): each source folder of the held-out set scored on its own, on that folder's notes
    folders = {folder: sorted(n for n in test_files if n.startswith(folder + "/")) for folder in ("groove", "pop909")}
    assert held_out["source_folders"] == folders
    for name, side in sides.items():
        assert set(side["by_folder"]) == set(folders), name
        for folder, scored in side["by_folder"].items():
            assert scored["notes"] == sum(mido_note_ons(dev_data / f) for f in folders[folder]) > 0, (name, folder)
            assert math.isfinite(scored["bits_per_note"]) and scored["bits_per_note"] > 0, (name, folder)
            assert scored["bits_per_note"] * scored["notes"] == pytest.approx(scored["total_bits"])
        # every target of the whole set is one of a folder's, but a folder's first (its stream's start)
        assert sum(s["targets"] for s in side["by_folder"].values()) == side["targets"] - (len(folders) - 1), name
    assert "(c) each source folder of the held-out set scored on its own" in done.stdout
    assert "(a) each codec at its default resolution" in done.stdout and "bits per event, by field" in done.stdout
    assert "(d) MidiTok at midiformer's full resolution" in done.stdout
    assert "midiformer@96 / REMI@96x127 bits per note" in done.stdout


def script_env() -> dict[str, str]:
    """The script imports this checkout's midiformer, whatever else is installed."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def mido_note_ons(path) -> int:
    return sum(m.type == "note_on" and m.velocity > 0 for track in mido.MidiFile(path).tracks for m in track)


@pytest.mark.slow  # the benchmark script in a subprocess: 7 s on 2 busy cores
def test_a_missing_folder_is_a_one_line_error_naming_the_option(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--train", str(tmp_path / "nowhere")], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=script_env())
    assert done.returncode == 2 and f"--train {tmp_path / 'nowhere'}: not a folder" in done.stderr


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.slow
def test_a_killed_bench_takes_its_training_workers_with_it(tmp_path):
    """`kill` (SIGTERM) of bench-quality ends the side workers too: none is left training as an orphan."""
    import signal
    import time

    picked, _ = tiny_corpus(tmp_path / "midi")
    command = [sys.executable, str(SCRIPT), "--train", str(tmp_path / "midi"), "--steps", "100000", "--layers", "1",
               "--d-model", "16", "--heads", "2", "--context", "32", "--batch", "2", "--threads", "2",
               "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "quality.json")]
    process = subprocess.Popen(command, cwd=REPO, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.time() + 300, []
    while time.time() < deadline and not any((tmp_path / "work" / side / "metrics.jsonl").exists()
                                             for side in ("midiformer@96", "REMI@default")):
        time.sleep(0.5)
    workers = [pid for pid in _children(process.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert workers, "no side worker was training: the test would prove nothing"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) != 0
    time.sleep(2)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()], "orphaned side workers"
