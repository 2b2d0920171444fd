"""Samples during training (trainer.sample_every): the model continues a fixed validation primer, so a
user watches the music get better, not only the loss.

At each sample step the run folder gets samples/step_NNNNNN.mid (primer, whistle, continuation),
.png (piano roll), .json (its metrics against the primer and the song's real continuation) and .wav
when FluidSynth and a General MIDI SoundFont are found; the piano roll (and the audio) go to
TensorBoard and W&B through the run's MetricSinks, with a few of its metrics as sample/* scalars
(metrics.jsonl stays the training and validation curves; the figures are in the sample's .json).

The primer: the first `trainer.sample_primer_events` events of the first song of the validation
split (at most half the context), the same at every step and on resume. The sampling uses its own
seeded torch.Generator and the model in eval mode: the training's random streams are not touched,
so a run with samples trains exactly as one without.
"""
from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import torch

from midiformer.codec import events, to_midi
from midiformer.data.store import codec_settings_of
from midiformer.generate import audio, metrics, primer, sampling
from midiformer.generate.pianoroll import save_pianoroll

log = logging.getLogger("midiformer.train")

SAMPLE_SEED = 0
LOGGED = ("notes", "chord_rate", "polyphony", "scale_consistency", "groove_consistency", "median_beats_melodic",
          "median_beats_drums")


def sample_during_training(model: torch.nn.Module, store, cfg, run_dir: Path, step: int, sinks) -> Path | None:
    """The trainer's one call (rank 0, every trainer.sample_every steps): None when the store has no
    validation song to take the primer from."""
    offsets = store.offsets("val")
    if len(offsets) < 2:
        return None
    cut = validation_primer(store.events("val"), offsets, cfg.trainer.sample_primer_events, cfg.model.max_seq_len)
    return write_training_sample(model, cut, step, run_dir, cfg.trainer, codec_settings_of(cfg.data), sinks)


def validation_primer(val_events: np.ndarray, val_offsets: np.ndarray, n_events: int, context: int) -> primer.Cut:
    """The fixed primer (the first song of the validation split, cut after n_events rows) and the song's rest."""
    song = np.asarray(val_events[val_offsets[0]:val_offsets[1]], np.int64)
    cut = max(min(n_events, context // 2, len(song) - 1), 1)  # END is never part of a primer
    return primer.Cut(song[:cut], song[cut:])


def write_training_sample(model: torch.nn.Module, cut: primer.Cut, step: int, run_dir: Path, trainer_cfg,
                          codec: dict, sinks) -> Path:
    """Sample, write samples/step_NNNNNN.* and log them; returns the .mid path."""
    was_training = model.training
    model.eval()
    try:
        ticks_per_beat = codec["ticks_per_beat"]
        settings = sampling.Settings(n_events=trainer_cfg.sample_events, ticks_per_beat=ticks_per_beat,
                                     controls=tuple(codec["controls"]), pitch_bend=codec["pitch_bend"],
                                     durations=codec["durations"], allow_end=True)
        (sample,) = sampling.sample(model, cut.primer, settings, seed=SAMPLE_SEED)
    finally:
        model.train(was_training)
    continuation, _ = sampling.closed(sample)
    song = np.concatenate([cut.primer, continuation])
    stem = Path(run_dir) / "samples" / f"step_{step:06d}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    whistle = primer.whistle_at_handover(cut.primer, song, 84, 0.5, ticks_per_beat)
    mid, png, wav = stem.with_suffix(".mid"), stem.with_suffix(".png"), stem.with_suffix(".wav")
    to_midi.decode(primer.with_whistle(song, whistle) if whistle else song, mid, ticks_per_beat)
    save_pianoroll(mid, png, int(events.grid_ticks(cut.primer)[-1]), whistle.channel if whistle else None,
                   title=f"step {step}: validation primer + model")
    report = metrics.continuation_report(cut.primer, continuation, cut.rest if len(cut.rest) else None, ticks_per_beat)
    stem.with_suffix(".json").write_text(json.dumps({"step": step, "metrics": report}, indent=1) + "\n")
    synth = audio.synthesizer()
    if synth is not None:
        try:
            audio.render_wav(mid, wav, synth)
        except (OSError, subprocess.CalledProcessError) as error:  # a side product: never the run's end
            log.warning("step %d: no audio for the sample (%s)", step, str(error).splitlines()[0])
    if sinks is not None:
        scalars = {f"sample/{name}": report["continuation"][name] for name in LOGGED
                   if report["continuation"].get(name) is not None}
        sinks.log_media(step, "sample", png, wav if wav.exists() else None, scalars)
    return mid
