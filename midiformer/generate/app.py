"""python -m midiformer.generate checkpoint=PATH primer=FILE — continue a song with a trained model.

    python -m midiformer.generate checkpoint=outputs/.../checkpoints/best.pt primer=song.mid primer.seconds=4
    python -m midiformer.generate checkpoint=... num_samples=4 seconds=30 instruments=[0,33,drums] top_p=0.95

Per sample, out_dir gets sample_NN.mid (primer, whistle, continuation: plays in any MIDI player),
sample_NN.png (piano roll), sample_NN.json (settings, every event with its log-probability) and
sample_NN.wav when FluidSynth and a General MIDI SoundFont are found. Options: conf/generate.yaml.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from midiformer.codec import events
from midiformer.common import (
    CONF_DIR,
    check_values,
    exit_on_user_error,
    nonnegative,
    pick_device,
    positive,
    positive_int,
)
from midiformer.generate import audio, primer, sampling
from midiformer.generate.pianoroll import save_pianoroll
from midiformer.train.checkpoint import model_from_checkpoint

CHECKS = [
    ("checkpoint", lambda v: isinstance(v, str) and v != "", "a checkpoint file: checkpoint=PATH"),
    ("n_events", positive_int, "a positive integer"),
    ("num_samples", positive_int, "a positive integer"),
    ("seed", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    ("seconds", lambda v: v is None or positive(v), "null or a number > 0"),
    ("slide", lambda v: v is None or positive_int(v), "null or a positive integer"),
    ("num_threads", lambda v: v is None or positive_int(v), "null or a positive integer"),
    ("primer.start_seconds", nonnegative, "a number >= 0"),
    ("primer.seconds", lambda v: v is None or positive(v), "null or a number > 0"),
    ("primer.events", lambda v: v is None or positive_int(v), "null or a positive integer"),
    ("whistle.pitch", lambda v: isinstance(v, int) and 0 <= v < 128, "a MIDI pitch 0-127"),
    ("whistle.seconds", positive, "a number > 0"),
]


def settings_from(cfg: DictConfig, ticks_per_beat: int) -> sampling.Settings:
    instruments = OmegaConf.to_container(cfg.instruments) if cfg.instruments is not None else None
    fields = sampling.field_settings(*(OmegaConf.to_container(v) if isinstance(v, DictConfig) else v
                                       for v in (cfg.temperature, cfg.top_k, cfg.top_p)))
    return sampling.Settings(n_events=cfg.n_events, seconds=cfg.seconds, num_samples=cfg.num_samples,
                             kv_cache=cfg.kv_cache, slide=cfg.slide, instruments=instruments, allow_end=cfg.allow_end,
                             ticks_per_beat=ticks_per_beat, fields=fields, progress=cfg.progress)


def primer_rows(cfg: DictConfig, ticks_per_beat: int) -> np.ndarray:
    if cfg.primer.file is None:
        return primer.start_row()
    return primer.load_primer(cfg.primer.file, ticks_per_beat, seconds=cfg.primer.seconds,
                              n_events=cfg.primer.events, start_seconds=cfg.primer.start_seconds)


def generate(cfg: DictConfig, out_dir: str | Path) -> list[Path]:
    """Sample and write every output file; returns the .mid paths."""
    check_values(cfg, CHECKS)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    model, run_cfg = model_from_checkpoint(cfg.checkpoint, device, averaged=cfg.averaged)
    ticks_per_beat = int(run_cfg.data.ticks_per_beat)
    settings = settings_from(cfg, ticks_per_beat)  # checks instruments and sampling options before any work
    start = primer_rows(cfg, ticks_per_beat)
    samples = sampling.sample(model, start, settings, seed=cfg.seed)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    synth = audio.synthesizer(cfg.soundfont)
    written = [write_sample(out_dir / f"sample_{i:02d}", start, sample, cfg, ticks_per_beat, synth)
               for i, sample in enumerate(samples)]
    if synth is None:
        print(audio.HOW_TO_GET_AUDIO)
    print(f"{len(written)} sample(s) written to {out_dir.resolve()}")
    return written


def write_sample(stem: Path, start: np.ndarray, sample: sampling.Sample, cfg: DictConfig, ticks_per_beat: int,
                 synth) -> Path:
    """stem.mid, .png, .json (and .wav) for one sample."""
    continuation, logprobs = sampling.closed(sample)
    song = np.concatenate([start, continuation])
    whistle = None
    if cfg.whistle.enabled and cfg.primer.file is not None:
        whistle = primer.whistle_at_handover(start, song, cfg.whistle.pitch, cfg.whistle.seconds, ticks_per_beat)
        if whistle is None:
            print(f"{stem.name}: no whistle, the primer uses every melodic channel")
    mid = stem.with_suffix(".mid")
    events.decode(primer.with_whistle(song, whistle) if whistle else song, mid, ticks_per_beat)
    handover_tick = int(events.grid_ticks(start)[-1])
    source = Path(cfg.primer.file).name if cfg.primer.file else "no primer"
    save_pianoroll(mid, stem.with_suffix(".png"), handover_tick, whistle.channel if whistle else None,
                   title=f"{stem.name}: {source} + model")
    report = sample_report(cfg, start, continuation, logprobs, whistle, ticks_per_beat)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    if synth is not None:
        audio.render_wav(mid, stem.with_suffix(".wav"), synth)
    return mid


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


def argv_with_primer_file(argv: list[str]) -> list[str]:
    """`primer=FILE` is short for `primer.file=FILE` (Hydra would replace the whole primer node)."""
    return [f"primer.file={a.split('=', 1)[1]}" if a.startswith("primer=") else a for a in argv]


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="generate")
def main(cfg: DictConfig) -> None:
    torch.set_grad_enabled(False)
    out_dir = cfg.out_dir or HydraConfig.get().runtime.output_dir
    exit_on_user_error(generate, cfg, out_dir)


def run() -> None:
    """The command line (generate/__main__.py): `primer=FILE` rewritten before Hydra reads it."""
    sys.argv = argv_with_primer_file(sys.argv)
    main()
