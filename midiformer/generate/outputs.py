"""The files of one sample: stem.mid (primer, whistle, continuation), .png (piano roll), .json (settings,
metrics, memorisation, every event with its log-probability) and .wav when FluidSynth is found."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from midiformer.codec import events, grammar, to_midi
from midiformer.generate import audio, metrics, primer, sampling
from midiformer.generate.memorisation import MemorisationIndex, note_tokens
from midiformer.generate.pianoroll import save_pianoroll


def write_sample(stem: Path, cut: primer.Cut, sample: sampling.Sample, cfg: DictConfig, ticks_per_beat: int,
                 synth, index: MemorisationIndex | None, source: str, seed: int | None = None) -> dict:
    """stem.mid, .png, .json (and .wav) for one sample; returns the JSON's report."""
    start = cut.primer
    continuation, logprobs = sampling.closed(sample)
    song = np.concatenate([start, continuation])
    grammar.check(song, song=True)  # the sampler's masks keep the codec's grammar: a break is a bug here
    whistle = None
    if cfg.whistle.enabled and len(start) > 1:
        whistle = primer.whistle_at_handover(start, song, cfg.whistle.pitch, cfg.whistle.seconds, ticks_per_beat)
        if whistle is None:
            print(f"{stem.name}: no whistle, the primer uses every melodic channel")
    stem.parent.mkdir(parents=True, exist_ok=True)
    mid = stem.with_suffix(".mid")
    to_midi.decode(primer.with_whistle(song, whistle) if whistle else song, mid, ticks_per_beat)
    save_pianoroll(mid, stem.with_suffix(".png"), int(events.grid_ticks(start)[-1]),
                   whistle.channel if whistle else None, title=f"{stem.name}: {source} + model")
    report = sample_report(cfg, start, continuation, logprobs, whistle, ticks_per_beat)
    report["seed"] = cfg.seed if seed is None else seed  # the generator's seed of this sample's batch
    report["metrics"] = metrics.continuation_report(start, continuation, cut.rest if len(cut.rest) else None,
                                                    ticks_per_beat)
    report["memorisation"] = memorisation_report(index, song, start, cut.rest, continuation)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    if synth is not None:
        audio.render_wav(mid, stem.with_suffix(".wav"), synth)
    return report


def memorisation_report(index: MemorisationIndex | None, song: np.ndarray, start: np.ndarray, rest: np.ndarray,
                        continuation: np.ndarray) -> dict | None:
    """The memorisation check of the continuation's notes (their first gap from the primer's last note),
    and under `real_continuation` the same for the song's real continuation over the same ticks: how
    much a song the model never saw shares with the training songs anyway (a reference)."""
    if index is None:
        return None
    primer_notes = events.count_notes(start)
    report = index.check(note_tokens(song)[primer_notes:])
    if len(rest):
        length = int(events.grid_ticks(continuation)[-1]) if len(continuation) else 0
        real_notes = len(metrics.real_continuation_notes(rest, length))
        real_tokens = note_tokens(np.concatenate([start, rest]))[primer_notes:primer_notes + real_notes]
        report["real_continuation"] = index.check(real_tokens)
    return report


def sample_report(cfg: DictConfig, start: np.ndarray, continuation: np.ndarray, logprobs: np.ndarray,
                  whistle: primer.Whistle | None, ticks_per_beat: int) -> dict:
    """The .json: settings, hand-over and whistle, then every event: its part (primer, continuation or
    closing: the note-offs and END added after sampling), its fields, and the model's log-probability
    (natural log, summed over the fields that apply; null for rows the model did not sample)."""
    rows = np.concatenate([start, continuation]).tolist()
    row_logprobs = [None] * len(start) + [None if np.isnan(x) else float(x) for x in logprobs]
    parts = ["primer"] * len(start) + ["closing" if np.isnan(x) else "continuation" for x in logprobs]
    return {
        "settings": OmegaConf.to_container(cfg, resolve=True),
        "ticks_per_beat": ticks_per_beat,
        "handover": {"tick": int(events.grid_ticks(start)[-1]), "seconds": events.seconds(start, ticks_per_beat),
                     "primer_events": len(start)},
        "whistle": None if whistle is None else {**whistle.__dict__, "program": primer.WHISTLE_PROGRAM},
        "continuation_logprob": float(np.nansum(logprobs)),
        "events": [{"part": part, "type": events.TYPES[row[0]], **dict(zip(events.FIELDS[1:], row[1:])), "logprob": lp}
                   for part, row, lp in zip(parts, rows, row_logprobs)],
    }
