"""MIDI -> WAV through FluidSynth, when the `fluidsynth` program and a General MIDI SoundFont exist.

No Python dependency is added for audio: the SoundFont is the one given, else $MIDIFORMER_SOUNDFONT,
else a system one (Debian/Ubuntu `fluid-soundfont-gm`: FluidR3_GM, 141 MB, the better sound), else
the small one pretty_midi ships (TimGM6mb, 6 MB; muspy installs pretty_midi).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
from pathlib import Path

from midiformer.common import STOP_SIGNALS

SYSTEM_SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2",
                     "/usr/share/soundfonts/default.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
HOW_TO_GET_AUDIO = ("no .wav written: install FluidSynth and a General MIDI SoundFont (e.g. `apt install fluidsynth "
                    "fluid-soundfont-gm`, or `pip install pretty_midi` for its SoundFont) or pass soundfont=FILE.sf2")


def find_soundfont(given: str | None = None) -> Path | None:
    candidates = [given, os.environ.get("MIDIFORMER_SOUNDFONT"), *SYSTEM_SOUNDFONTS]
    spec = importlib.util.find_spec("pretty_midi")  # found without importing it
    if spec is not None and spec.origin:
        candidates.append(str(Path(spec.origin).parent / "TimGM6mb.sf2"))
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def synthesizer(soundfont: str | None = None) -> tuple[str, Path] | None:
    """(fluidsynth program, SoundFont) when both are found, else None."""
    program, font = shutil.which("fluidsynth"), find_soundfont(soundfont)
    return (program, font) if program and font else None


def render_wav(midi_path: str | Path, wav_path: str | Path, synth: tuple[str, Path], sample_rate: int = 44100) -> None:
    program, font = synth
    command = [program, "-ni", "-F", str(wav_path), "-r", str(sample_rate), str(font), str(midi_path)]
    # SLURM signals every process of a job step; the trainer stops cleanly on STOP_SIGNALS after what it is
    # doing, so FluidSynth, rendering a sample during training, must not die of them. A signal blocked at
    # fork stays blocked in the child across exec.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # ours arrive now, to our handlers
    stdout, stderr = process.communicate()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command, stdout, stderr)
