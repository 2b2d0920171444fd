"""Continue one primer from each MIDI file of a folder and summarise the metrics over songs and samples.

    python -m midiformer.generate checkpoint=PATH primers=DIR num_samples=2 primer.seconds=4 seconds=8

writes out_dir/model/<song>/sample_NN.* (as a single-primer run does), and with `baseline.untrained=true`
the same for a model of the run's shape with fresh weights (out_dir/untrained/...), then
summary.json (per metric: mean, std and count over every primer x sample, for the primer, the real
continuation, the model and the untrained model) and summary.md (the same as a table).

From Python (the paper table): `app.score_continuations(checkpoint, primers_dir, out_dir, overrides)`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from midiformer.common import USER_ERRORS, ConfigError
from midiformer.generate import metrics, primer, sampling
from midiformer.generate.outputs import write_sample

MIDI_SUFFIXES = (".mid", ".midi")
COLUMNS = ("primer", "real", "model", "untrained")
SAMPLED = ("model", "untrained")  # the columns of continuations a model made
# (summary row, where it is in a sample's report ({part}: the column's part), the columns it applies to)
ROWS = [*((name, ("metrics", "{part}", name), COLUMNS) for name in metrics.PART_METRICS),
        *((f"{name}_to_primer", ("metrics", "{part}_vs_primer", name), ("real", *SAMPLED))
          for name in metrics.COMPARISONS),
        ("pitch_class_distance_to_real", ("metrics", "continuation_vs_real", "pitch_class_distance"), SAMPLED),
        ("onset_grid_distance_to_real", ("metrics", "continuation_vs_real", "onset_grid_distance"), SAMPLED),
        ("tempo_ratio", ("metrics", "tempo", "tempo_ratio"), SAMPLED),
        ("longest_copied_run", ("memorisation", "{part}", "longest_run"), ("real", *SAMPLED)),
        ("share_in_copied_runs", ("memorisation", "{part}", "share_in_runs"), ("real", *SAMPLED))]


def primer_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"primers={folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"primers={folder}: no .mid or .midi file in it")
    return files


def untrained_like(model: torch.nn.Module, model_cfg: DictConfig, seed: int) -> torch.nn.Module:
    """A model of the run's shape and initialisation scheme (model_cfg), with fresh weights drawn from `seed`."""
    from midiformer.model import MidiGPT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = MidiGPT(model_cfg)
    return fresh.to(next(model.parameters()).device).eval()


def continue_primers(model, files: list[Path], cfg: DictConfig, settings: sampling.Settings, out_dir: Path,
                     synth, index, skipped: list[dict]) -> list[dict]:
    """Every sample's report (metrics, memorisation) for one primer cut from each file; a file that
    cannot give a primer (not MIDI, too short, longer than the context) is listed in `skipped`."""
    reports = []
    seeds = list(cfg.seeds) if cfg.seeds is not None else [cfg.seed]
    for path in files:
        try:
            cut = primer.load_cut(path, settings.ticks_per_beat, seconds=cfg.primer.seconds,
                                  n_events=cfg.primer.events, start_seconds=cfg.primer.start_seconds,
                                  controls=settings.controls, pitch_bend=settings.pitch_bend,
                                  durations=settings.durations)
            samples = [(seed, sample) for seed in seeds for sample in sampling.sample(model, cut.primer, settings, seed)]
        except USER_ERRORS as error:
            if not any(s["file"] == str(path) for s in skipped):
                print(f"skipped {path}: {error}")
                skipped.append({"file": str(path), "reason": str(error)})
            continue
        for i, (seed, sample) in enumerate(samples):
            report = write_sample(out_dir / path.stem / f"sample_{i:02d}", cut, sample, cfg, settings.ticks_per_beat,
                                  synth, index, path.name, seed=seed)
            reports.append({"primer": str(path), "sample": i, "seed": seed, "metrics": report["metrics"],
                            "memorisation": report["memorisation"]})
    return reports


def _lookup(report: dict, where: tuple[str, ...], part: str):
    """The value at `where` in a sample's report; "{part}" names the column's part. The memorisation
    check is the continuation's own dict, with the real continuation's inside it."""
    value = report
    for key in where:
        if key == "{part}" and where[0] == "memorisation":
            key = "real_continuation" if part == "real" else None
        if key is not None:
            value = value.get(key.format(part=part)) if isinstance(value, dict) else None
    return value


def summarise(reports_by_model: dict[str, list[dict]]) -> dict:
    """mean, std (over primers x samples; ddof 0) and n per row and column. The primer and the real
    continuation are read from the model's samples, once per sample, so that every column averages over
    the same songs (the real continuation is cut to each sample's length)."""
    sources = {"primer": ("model", "primer"), "real": ("model", "real")}
    sources.update({name: (name, "continuation") for name in reports_by_model})
    table: dict[str, dict[str, dict]] = {}
    for row, where, columns in ROWS:
        table[row] = {}
        for column, (model_name, part) in sources.items():
            if column not in columns or model_name not in reports_by_model:
                continue
            values = [_lookup(r, where, part) for r in reports_by_model[model_name]]
            values = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
            if values:
                table[row][column] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
    return table


def summary_table(table: dict) -> str:
    columns = [c for c in COLUMNS if any(c in cells for cells in table.values())]
    names = {"primer": "primer", "real": "real continuation", "model": "model", "untrained": "untrained model"}
    lines = ["| metric | " + " | ".join(names[c] for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for row, cells in table.items():
        if not cells:
            continue  # e.g. drum durations of songs without drums
        shown = [f"{cells[c]['mean']:.3f} ± {cells[c]['std']:.3f}" if c in cells else "" for c in columns]
        lines.append(f"| {row} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def run_primers(model, model_cfg: DictConfig, cfg: DictConfig, settings: sampling.Settings, out_dir: Path, synth, index) -> dict:
    """The primers=DIR mode: continue, summarise, write summary.json and summary.md; returns the summary."""
    files = primer_files(cfg.primers)
    skipped: list[dict] = []
    reports = {"model": continue_primers(model, files, cfg, settings, out_dir / "model", synth, index, skipped)}
    if cfg.baseline.untrained:
        reports["untrained"] = continue_primers(untrained_like(model, model_cfg, cfg.seed), files, cfg, settings,
                                                out_dir / "untrained", synth, index, skipped)
    if not reports["model"]:
        raise ConfigError(f"primers={cfg.primers}: no file gave a primer ({len(skipped)} skipped; see above)")
    seeds = list(cfg.seeds) if cfg.seeds is not None else [cfg.seed]
    return write_summary(out_dir, reports, {"primers": len({r["primer"] for r in reports["model"]}),
                                            "samples_per_primer": settings.num_samples * len(seeds), "seeds": seeds,
                                            "ticks_per_beat": settings.ticks_per_beat,
                                            "checkpoint": str(cfg.checkpoint), "skipped": skipped})


def write_summary(out_dir: Path, reports: dict[str, list[dict]], about: dict) -> dict:
    """summary.json (`about`, the table, every sample's metrics) and summary.md; the table is printed too."""
    table = summarise(reports)
    summary = {**about, "table": table, "samples": reports}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / "summary.md").write_text(summary_table(table))
    print(summary_table(table))
    return summary
