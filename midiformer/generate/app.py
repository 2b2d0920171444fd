"""python -m midiformer.generate checkpoint=PATH primer=FILE — continue a song with a trained model.

    python -m midiformer.generate checkpoint=outputs/.../checkpoints/best.pt primer=song.mid primer.seconds=4
    python -m midiformer.generate checkpoint=... num_samples=4 seconds=30 instruments=[0,33,drums] top_p=0.95

    python -m midiformer.generate checkpoint=... primers=DIR num_samples=2 seconds=8   # one primer per file

Per sample, out_dir gets sample_NN.mid (primer, whistle, continuation: plays in any MIDI player),
sample_NN.png (piano roll), sample_NN.json (settings, metrics against the primer and the song's real
continuation, the memorisation check, every event with its log-probability) and sample_NN.wav when
FluidSynth and a General MIDI SoundFont are found; primers=DIR adds summary.json and summary.md
(scoring.py). Options: conf/generate.yaml.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from midiformer.codec import events
from midiformer.common import (
    CONF_DIR,
    ConfigError,
    check_values,
    exit_on_user_error,
    nonnegative,
    pick_device,
    positive,
    positive_int,
)
from midiformer.data.store import MANIFEST, codec_settings_of, prepare_store
from midiformer.generate import audio, primer, sampling, scoring
from midiformer.generate.memorisation import MemorisationIndex
from midiformer.generate.outputs import write_sample
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
    ("primers", lambda v: v is None or (isinstance(v, str) and v != ""), "null or a folder of MIDI files"),
    ("seeds", lambda v: v is None or (len(v) > 0 and all(isinstance(x, int) and x >= 0 for x in v)),
     "null or a list of integers >= 0, e.g. [0,1]"),
    ("memorisation.ngram", lambda v: positive_int(v) and v >= 2, "an integer >= 2"),
    ("memorisation.stride", positive_int, "a positive integer"),
    ("memorisation.max_hits", positive_int, "a positive integer"),
]


def settings_from(cfg: DictConfig, codec: dict) -> sampling.Settings:
    """The sampling settings, with the codec settings the model was trained with (data.codec)."""
    instruments = OmegaConf.to_container(cfg.instruments) if cfg.instruments is not None else None
    fields = sampling.field_settings(*(OmegaConf.to_container(v) if isinstance(v, DictConfig) else v
                                       for v in (cfg.temperature, cfg.top_k, cfg.top_p)))
    return sampling.Settings(n_events=cfg.n_events, seconds=cfg.seconds, num_samples=cfg.num_samples,
                             kv_cache=cfg.kv_cache, slide=cfg.slide, instruments=instruments, allow_end=cfg.allow_end,
                             ticks_per_beat=codec["ticks_per_beat"], controls=tuple(codec["controls"]),
                             pitch_bend=codec["pitch_bend"], durations=codec["durations"], fields=fields,
                             progress=cfg.progress)


def primer_cut(cfg: DictConfig, settings: sampling.Settings) -> primer.Cut:
    """The primer (a START row without primer.file) and the song's real continuation after it."""
    if cfg.primer.file is None:
        return primer.Cut(primer.start_row(), np.zeros((0, len(events.FIELDS)), np.int64))
    return primer.load_cut(cfg.primer.file, settings.ticks_per_beat, seconds=cfg.primer.seconds,
                           n_events=cfg.primer.events, start_seconds=cfg.primer.start_seconds,
                           controls=settings.controls, pitch_bend=settings.pitch_bend, durations=settings.durations)


def memorisation_index(cfg: DictConfig, run_cfg: DictConfig, checkpoint: Path) -> MemorisationIndex | None:
    """The training store's index (built once, cached in the store's folder); None when switched off.
    The store: memorisation.store, else the run folder's summary.json says, else the run's data config."""
    if not cfg.memorisation.enabled:
        return None
    store = cfg.memorisation.store
    if store is not None and not (Path(store) / MANIFEST).is_file():
        raise ConfigError(f"memorisation.store={store}: not a prepared store (no {MANIFEST}); "
                          f"give a folder python -m midiformer.prepare made, or memorisation.enabled=false")
    summary = checkpoint.resolve().parent.parent / "summary.json"
    if store is None and summary.is_file():
        store = json.loads(summary.read_text()).get("store")
    if store is None or not (Path(store) / MANIFEST).is_file():
        store = prepare_store(run_cfg.data)  # the run's data: found again, or prepared once
    return MemorisationIndex(store, cfg.memorisation.ngram, cfg.memorisation.stride, max_hits=cfg.memorisation.max_hits)


def generate(cfg: DictConfig, out_dir: str | Path) -> list[Path]:
    """Sample and write every output file; returns the .mid paths."""
    check_values(cfg, CHECKS)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    model, run_cfg = model_from_checkpoint(cfg.checkpoint, device, averaged=cfg.averaged)
    settings = settings_from(cfg, codec_settings_of(run_cfg.data))  # checks every option before any work
    ticks_per_beat = settings.ticks_per_beat
    out_dir = Path(out_dir)
    if cfg.primers is not None:
        scoring.primer_files(cfg.primers)  # a bad folder fails before the index is built
    index = memorisation_index(cfg, run_cfg, Path(cfg.checkpoint))
    synth = audio.synthesizer(cfg.soundfont)
    if cfg.primers is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = scoring.run_primers(model, run_cfg.model, cfg, settings, out_dir, synth, index)
        written = [out_dir / "model" / Path(r["primer"]).stem / f"sample_{r['sample']:02d}.mid"
                   for r in summary["samples"]["model"]]
    else:
        cut = primer_cut(cfg, settings)
        samples = sampling.sample(model, cut.primer, settings, seed=cfg.seed)
        out_dir.mkdir(parents=True, exist_ok=True)
        source = Path(cfg.primer.file).name if cfg.primer.file else "no primer"
        written, reports = [], []
        for i, sample in enumerate(samples):
            report = write_sample(out_dir / f"sample_{i:02d}", cut, sample, cfg, ticks_per_beat, synth, index, source)
            reports.append({"primer": source, "sample": i, "seed": cfg.seed, "metrics": report["metrics"],
                            "memorisation": report["memorisation"]})
            written.append(out_dir / f"sample_{i:02d}.mid")
        scoring.write_summary(out_dir, {"model": reports}, {"primers": 1, "samples_per_primer": len(samples),
                                                            "seeds": [cfg.seed], "ticks_per_beat": ticks_per_beat,
                                                            "checkpoint": str(cfg.checkpoint), "skipped": []})
    if synth is None:
        print(audio.HOW_TO_GET_AUDIO)
    print(f"{len(written)} sample(s) written to {out_dir.resolve()}")
    return written


def score_continuations(checkpoint: str | Path, primers: str | Path, out_dir: str | Path,
                        overrides: tuple[str, ...] = ()) -> dict:
    """summary.json's content for a checkpoint's continuations of one primer per file of `primers`
    (and an untrained model of the same shape unless overrides say baseline.untrained=false); the
    other options are conf/generate.yaml's, changed by Hydra-style `overrides` (e.g. "num_samples=4")."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("generate", overrides=[f"checkpoint={checkpoint}", f"primers={primers}",
                                             "baseline.untrained=true", f"out_dir={out_dir}", *overrides])
    generate(cfg, out_dir)
    return json.loads((Path(out_dir) / "summary.json").read_text())


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
