"""Real audio: the `fluidsynth` program with a General MIDI SoundFont renders real dev files (skipped, with
the reason, where FluidSynth is absent; .ci/run installs it)."""
from __future__ import annotations

import wave

import mido
import numpy as np
import pytest

from midiformer.generate import audio

SYNTH = audio.synthesizer()
pytestmark = pytest.mark.skipif(SYNTH is None, reason="no fluidsynth program and General MIDI SoundFont "
                                "(apt-get install fluidsynth fluid-soundfont-gm)")
RELEASE_TAIL_S = 10.0  # FluidSynth renders until every voice has died away (a crash cymbal rings for seconds)
AUDIBLE = 0.01  # of full scale: about -40 dB


def read_wav(path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as f:
        assert f.getsampwidth() == 2
        pcm = np.frombuffer(f.readframes(f.getnframes()), np.int16).reshape(-1, f.getnchannels())
        return pcm.astype(np.float64) / 32768.0, f.getframerate()


@pytest.mark.parametrize("name", ["groove/drummer1_eval_session_1_funk-groove1_138_beat_4-4.mid",
                                  "openmsx/coconut_run2.mid"])
def test_the_wav_sounds_for_as_long_as_the_midi_plays(name, dev_data, tmp_path):
    midi_path = dev_data / name
    audio.render_wav(midi_path, tmp_path / "song.wav", SYNTH)
    pcm, rate = read_wav(tmp_path / "song.wav")
    length = mido.MidiFile(midi_path).length  # an independent reading of the file's duration
    level = np.abs(pcm).max(axis=1)
    assert np.sqrt((pcm ** 2).mean()) > 1e-3  # not silent: digital silence and dither stay below 1e-4
    last_audible = np.nonzero(level > AUDIBLE)[0][-1] / rate
    first_audible = np.nonzero(level > AUDIBLE)[0][0] / rate
    assert abs(last_audible - length) < 1.0, (last_audible, length)
    assert first_audible < 1.0
    assert length - 1.0 < len(pcm) / rate < length + 1.0 + RELEASE_TAIL_S


def test_a_system_general_midi_soundfont_is_preferred():
    font = audio.find_soundfont()
    assert font is not None and font.stat().st_size > 1_000_000


def _signal_children_named(program: str, signum: int, sent: list[int], stop) -> None:
    """Send `signum` to our child process running `program` once it shows up in /proc (SLURM signals every
    process of a job step, FluidSynth included)."""
    import os
    from pathlib import Path

    me = str(os.getpid())
    while not stop.is_set() and not sent:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                name = stat.with_name("comm").read_text().strip()
            except OSError:
                continue
            if fields[1] == me and name == program:
                os.kill(int(stat.parent.name), signum)
                sent.append(int(stat.parent.name))
                return
        stop.wait(0.005)


def test_a_sigusr2_to_fluidsynth_while_it_renders_does_not_kill_it(dev_data, tmp_path):
    """A time limit's SIGUSR2 reaches FluidSynth too while a sample renders during training: the render
    still completes (the trainer stops cleanly on its own copy of the signal)."""
    import signal
    import threading

    stop, sent = threading.Event(), []
    sender = threading.Thread(target=_signal_children_named, args=("fluidsynth", signal.SIGUSR2, sent, stop))
    sender.start()
    try:
        audio.render_wav(dev_data / "openmsx" / "coconut_run2.mid", tmp_path / "song.wav", SYNTH)
    finally:
        stop.set()
        sender.join()
    assert sent, "FluidSynth ended before it could be signalled: the test proved nothing"
    pcm, _ = read_wav(tmp_path / "song.wav")
    assert np.sqrt((pcm ** 2).mean()) > 1e-3
