"""The built-in data: the Bach chorales that ship with music21, converted to MIDI files once.

music21's corpus is on disk (no network). Converting a chorale takes ~0.2 s, ~410 chorales about
3 minutes in one process, so the conversion runs in parallel and is cached in the cache folder:

    <data.cache_dir>/bach_midi-v<FORMAT_VERSION>-music21-<version>[-first<limit>]/bwv1.6.mid ...

The folder is built under a temporary name and renamed when complete, like a store; from then on it
is an ordinary folder of MIDI files that store.py prepares like any other (sources.py registers it
as the data source `bach`).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from midiformer.codec.events import DRUM_CHANNEL
from midiformer.data.atomic import temporary_folder_beside
from midiformer.data.corpus import parallel_map

log = logging.getLogger(__name__)

SCORE_SUFFIXES = {".mxl", ".xml"}  # the chorales; the .krn files repeat three of them, the .rntxt are analyses
FORMAT_VERSION = 2  # bump when score_to_midi writes different files: the cached folder is keyed by it
VOICE_CHANNELS = [c for c in range(16) if c != DRUM_CHANNEL]  # a voice never lands on the drum channel


def chorale_sources(limit: int | None = None) -> list[Path]:
    """music21's Bach chorale scores, sorted by name (the first `limit` only, for quick tests)."""
    from music21 import corpus

    scores = sorted(Path(p) for p in corpus.getComposer("bach") if Path(p).suffix in SCORE_SUFFIXES)
    return scores[:limit]


def score_to_midi(source: str | Path, target: str | Path) -> None:
    """Write a score as a MIDI file, each voice (part) on its own channel.

    music21 gives one channel per instrument, so the four voices of a chorale, all on program 0, would
    share one channel: voice leading would be lost, and two voices in unison would overlap on one
    pitch. One channel per part keeps soprano, alto, tenor and bass apart, as a raw-MIDI model wants.
    """
    from music21 import converter, midi

    midi_file = midi.translate.streamToMidiFile(converter.parse(source))
    voices = [track for track in midi_file.tracks if any(event.isNoteOn() for event in track.events)]
    for voice, track in enumerate(voices):
        for event in track.events:
            if isinstance(event.type, midi.ChannelVoiceMessages):
                event.channel = VOICE_CHANNELS[voice % len(VOICE_CHANNELS)] + 1  # music21 counts channels from 1
    midi_file.open(str(target), "wb")
    midi_file.write()
    midi_file.close()


def convert_one(job: tuple[str, str]) -> str | None:
    """Worker: one score -> one MIDI file. Returns why it failed, or None."""
    source, target = job
    try:
        score_to_midi(source, target)
        return None
    except Exception as error:  # a score music21 cannot read or render: leave it out, say so
        return f"{Path(source).name}: {type(error).__name__}: {error}"


def convert_chorales(cache_dir: str | Path, num_workers: int | None = None, limit: int | None = None) -> Path:
    """The folder of converted chorales, converting them first if it does not exist yet."""
    import music21

    name = f"bach_midi-v{FORMAT_VERSION}-music21-{music21.__version__}" + (f"-first{limit}" if limit else "")
    folder = Path(cache_dir).expanduser() / name
    if folder.is_dir():
        log.info("using the Bach chorales converted earlier in %s", folder)
        return folder
    temporary = temporary_folder_beside(folder)
    try:
        _convert_into(temporary, chorale_sources(limit), num_workers)
        os.rename(temporary, folder)
    except OSError:
        if not folder.is_dir():
            raise
        log.info("another process converted the chorales first; using %s", folder)  # e.g. another rank
    finally:
        shutil.rmtree(temporary, ignore_errors=True)  # nothing left to remove once renamed
    return folder


def _convert_into(folder: Path, sources: list[Path], num_workers: int | None) -> None:
    jobs = [(str(source), str(folder / f"{source.stem}.mid")) for source in sources]
    log.info("converting %d Bach chorales from music21 to MIDI, once", len(jobs))
    failures = [f for f in parallel_map(convert_one, jobs, num_workers, "bach chorales -> MIDI", "score") if f]
    for failure in failures:
        log.warning("Bach chorale not converted: %s", failure)
    log.info("converted %d of %d Bach chorales", len(jobs) - len(failures), len(jobs))
