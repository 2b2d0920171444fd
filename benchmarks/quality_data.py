"""bench-quality's data: the files every side trains and is scored on, the shared denominators, and MidiTok's tokens.

One reader counts for every side: midiformer's SMF reader (midiformer.codec.midi) gives each held-out
file's notes (note-on messages) and its duration in seconds (the file's own tempo map, exact ticks), so
bits/note and bits/second divide every side's total bits by the same two numbers.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from midiformer.codec import midi
from midiformer.data import corpus

DEFAULT_TEMPO = 500_000  # microseconds per quarter note until the first tempo event (120 BPM)
NOTE_TOKEN_KINDS = ("Pitch", "PitchDrum", "NoteOn", "DrumOn")  # the token that starts a note (REMI, MIDILike)


def notes_and_seconds(path: str | Path) -> tuple[int, float]:
    """Note-ons (velocity 0 counts as a note-off) and the length in seconds up to the last end-of-track,
    following every tempo change; raises midi.MidiError for a file the reader cannot read."""
    messages = midi.read_midi(path)
    notes = int((messages.kind == midi.NOTE_ON).sum())
    is_tempo = messages.kind == midi.TEMPO
    change_ticks = np.concatenate([[0], messages.tick[is_tempo]]).astype(np.float64)
    tempos = np.concatenate([[DEFAULT_TEMPO], messages.data1[is_tempo]]).astype(np.float64)
    segment_end = np.minimum(np.append(change_ticks[1:], messages.end_tick), messages.end_tick)
    ticks = np.maximum(segment_end - change_ticks, 0)
    return notes, float((ticks * tempos).sum() / 1e6 / messages.ticks_per_quarter)


# --- MidiTok -------------------------------------------------------------------------------------

def make_tokenizer(codec: str, options: dict):
    """A MidiTok 3.1 tokenizer: `codec` REMI or MIDILike, `options` TokenizerConfig's keyword arguments."""
    import miditok

    return getattr(miditok, codec)(miditok.TokenizerConfig(**options))


def tokenize(tokenizer, path: Path) -> np.ndarray:
    """One file tokenized whole, between BOS and EOS (songs follow each other in a stream, as midiformer's
    START ... END rows do)."""
    from symusic import Score

    sequence = tokenizer.encode(Score(path))
    ids = (sequence if not isinstance(sequence, list) else sequence[0]).ids  # one stream: use_programs=True
    return np.array([tokenizer.vocab["BOS_None"], *ids, tokenizer.vocab["EOS_None"]], dtype=np.int64)


def note_token_ids(tokenizer) -> np.ndarray:
    return np.array([i for name, i in tokenizer.vocab.items() if name.split("_")[0] in NOTE_TOKEN_KINDS])


@dataclass
class TokenStream:
    """Songs' tokens one after another, as midiformer's store holds rows: offsets[i] is song i's first token."""

    tokens: np.ndarray
    offsets: np.ndarray
    failed: dict[str, str] = field(default_factory=dict)  # file -> why MidiTok could not tokenize it


def token_stream(tokenizer, root: Path, files: list[str]) -> TokenStream:
    songs, failed = [], {}
    for relative_path in files:
        try:
            songs.append(tokenize(tokenizer, root / relative_path))
        except Exception as error:  # symusic and MidiTok raise many kinds; the file is listed, not fatal
            failed[relative_path] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    lengths = [len(song) for song in songs]
    tokens = np.concatenate(songs) if songs else np.zeros(0, np.int64)
    return TokenStream(tokens, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), failed)


# --- the held-out set ----------------------------------------------------------------------------

@dataclass
class HeldOut:
    root: Path                                   # a folder holding exactly the kept files
    files: list[str]                             # relative paths, sorted
    notes: dict[str, int]
    seconds: dict[str, float]
    excluded: dict[str, str]                     # file -> which side could not read it, and why


def source_folders(files: list[str]) -> dict[str, list[str]]:
    """The held-out files by the folder they sit in at the top (the dev corpus: its four sources), when
    every file is in one and there are at least two; else none. Each is also scored as a set of its own:
    where a representation wins (performed against sequenced music) shows."""
    folders: dict[str, list[str]] = {}
    for relative_path in files:
        folder, _, rest = relative_path.partition("/")
        if not rest:
            return {}
        folders.setdefault(folder, []).append(relative_path)
    return folders if len(folders) >= 2 else {}


def candidate_files(test_root: Path | None, train_root: Path, splits: dict[str, float]) -> tuple[Path, list[str]]:
    """--test DIR: every MIDI file in it. Default: the files of the training folder that midiformer's
    store puts in its test split (split_of hashes the relative path, so these are exactly that split)."""
    if test_root is not None:
        return test_root, corpus.find_midi_files(test_root)
    return train_root, [f for f in corpus.find_midi_files(train_root) if corpus.split_of(f, splits) == "test"]


def held_out_set(source: Path, files: list[str], target: Path, midiformer_settings: list[tuple[int, int | None]],
                 tokenizers: dict) -> HeldOut:
    """Keep the files that every side reads (our reader, midiformer's codec at each resolution, each MidiTok
    tokenizer) and copy them to `target` (keeping relative paths and times); list the others with a reason."""
    kept, notes, seconds, excluded = [], {}, {}, {}
    for relative_path in files:
        reason = why_unreadable(source / relative_path, source, relative_path, midiformer_settings, tokenizers)
        if reason is not None:
            excluded[relative_path] = reason
            continue
        kept.append(relative_path)
        notes[relative_path], seconds[relative_path] = notes_and_seconds(source / relative_path)
    if target.exists():
        shutil.rmtree(target)
    for relative_path in kept:
        (target / relative_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative_path, target / relative_path)
    return HeldOut(target, kept, notes, seconds, excluded)


def why_unreadable(path: Path, root: Path, relative_path: str, midiformer_settings, tokenizers: dict) -> str | None:
    try:
        if notes_and_seconds(path)[0] == 0:
            return "no notes"
    except midi.MidiError as error:
        return f"midiformer's reader: {str(error).replace(f'{path}: ', '')}"
    for ticks_per_beat, velocity_levels in midiformer_settings:
        codec = {"ticks_per_beat": ticks_per_beat, "controls": [], "pitch_bend": False}  # as quality_sides trains
        encoded = corpus.encode_file((str(root), relative_path, codec, velocity_levels))
        if encoded.reason is not None:
            return f"midiformer ({ticks_per_beat} steps per beat): {encoded.reason}"
    for name, tokenizer in tokenizers.items():
        try:
            tokenize(tokenizer, path)
        except Exception as error:  # symusic and MidiTok raise many kinds
            return f"MidiTok {name}: {type(error).__name__}: {error}"
    return None
