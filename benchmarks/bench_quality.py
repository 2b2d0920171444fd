"""Held-out quality at equal compute: midiformer against MidiTok 3.1 REMI and MIDILike + a plain GPT.

    make bench-quality                                    # the dev corpus' train split -> its test split
    make bench-quality ARGS="--steps 30 --layers 2 --d-model 64 --context 128"
    python benchmarks/bench_quality.py --train DIR --test DIR --override model.heads=cascade --out q.json

Every side trains the same transformer shape (depth, width, heads, context, batch, steps, AdamW with
warm-up and cosine decay, fp32, no dropout) on the same files, and is scored on the same held-out files:
bits/note and bits/second divide each side's total bits by one note count and one duration, both from
midiformer's SMF reader. Two tables: (a) each codec at its default resolution (midiformer: 96 steps per
beat, every velocity; MidiTok: its defaults), (b) matched resolution (both on the same grid and velocity
levels), so that the price of being lossless shows; (c) each source folder of the held-out set
scored on its own; and (d) MidiTok at midiformer's full resolution (96 positions per beat, every velocity),
so that the same price shows from the other side. Printed and written as JSON, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import quality_data
import quality_sides
import torch

from midiformer import provenance
from midiformer.common import ConfigError, dev_corpus, exit_on_user_error

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = dev_corpus(REPO)
SPLITS = {"train": 0.9, "val": 0.05, "test": 0.05}  # midiformer's default data.splits
MIDITOK_DEFAULT_GRID, MIDITOK_DEFAULT_VELOCITIES = 8, 32  # TokenizerConfig(): beat_res {(0, 4): 8, (4, 12): 4}
FULL_GRID, FULL_VELOCITIES = 96, 127  # midiformer's default data.codec.ticks_per_beat; MIDI's velocities 1..127


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/bench_quality.py", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--train", type=Path, default=DEV_DATA, help="training folder; its store's train split is what every side "
        "trains on (default: the dev corpus)")
    add("--test", type=Path, default=None, help="held-out folder, every file scored (default: the test split of --train)")
    add("--steps", type=int, default=300, help="optimizer steps of every side")
    add("--threads", type=int, default=2, help="CPU threads in all; sides run in parallel, one thread each, when >= 2")
    add("--layers", type=int, default=6)
    add("--d-model", type=int, default=256)
    add("--heads", type=int, default=4)
    add("--context", type=int, default=512, help="events or tokens per training and scoring window")
    add("--batch", type=int, default=16, help="windows per step (and per scoring batch)")
    add("--lr", type=float, default=6e-4, help="peak AdamW learning rate")
    add("--warmup", type=int, default=50, help="linear warm-up steps, then cosine decay to --min-lr-ratio x lr")
    add("--min-lr-ratio", type=float, default=0.1)
    add("--dropout", type=float, default=0.0)
    add("--seed", type=int, default=0)
    add("--device", default="cpu", help="cpu | cuda (every side on it)")
    add("--matched-grid", type=int, default=MIDITOK_DEFAULT_GRID,
        help="table (b): midiformer's data.codec.ticks_per_beat and MidiTok's positions per beat (first 4 beats)")
    add("--matched-velocities", type=int, default=MIDITOK_DEFAULT_VELOCITIES,
        help="table (b): velocity levels of both (midiformer's data.velocity_levels, MidiTok's num_velocities)")
    add("--full-resolution", action=argparse.BooleanOptionalAction, default=True,
        help="table (d): MidiTok also at midiformer's full resolution (96 positions per beat, 127 velocities)")
    add("--codecs", default="REMI,MIDILike", help="MidiTok tokenizers to compare (comma-separated)")
    add("--override", action="append", default=[], metavar="KEY=VALUE",
        help="a Hydra override for the midiformer sides (repeatable), e.g. --override model.heads=cascade")
    add("--work-dir", type=Path, default=REPO / "outputs" / "bench_quality", help="run folders, stores, held-out copy")
    add("--out", type=Path, default=None, help="JSON of every figure (default: <work-dir>/bench_quality.json)")
    args = parser.parse_args(argv)
    for name in ("steps", "threads", "layers", "d_model", "heads", "context", "batch", "matched_grid",
                 "matched_velocities"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be a positive integer")
    if args.d_model % args.heads:
        parser.error(f"--d-model={args.d_model} must be divisible by --heads={args.heads}")
    for option in ("train", "test"):
        folder = getattr(args, option)
        if folder is not None and not folder.is_dir():
            parser.error(f"--{option} {folder}: not a folder")
    args.codecs = [c for c in args.codecs.split(",") if c]
    unknown = [c for c in args.codecs if c not in ("REMI", "MIDILike")]
    if unknown:
        parser.error(f"--codecs: {', '.join(unknown)} unknown; choose from REMI, MIDILike")
    args.out = args.out or args.work_dir / "bench_quality.json"
    return args


def miditok_options(grid: int | None, velocities: int | None) -> dict:
    """TokenizerConfig keywords: MidiTok's defaults plus use_programs (multi-track, one stream); a grid and
    velocity count when matched, in MidiTok's own layout (full grid for 4 beats, half that up to 12)."""
    options = {"use_programs": True}
    if (grid, velocities) != (MIDITOK_DEFAULT_GRID, MIDITOK_DEFAULT_VELOCITIES) and grid is not None:
        options.update(beat_res={(0, 4): grid, (4, 12): max(1, grid // 2)}, num_velocities=velocities)
    return options


def plan_sides(args: argparse.Namespace) -> tuple[list[dict], dict[str, list[str]]]:
    """Every side to train, and the side names of each table; a side both tables need is trained once."""
    sides, tables = {}, {"default": [], "matched": []}
    resolutions = {"default": (FULL_GRID, None, None, None), "matched": (args.matched_grid, args.matched_velocities,
                                                                         args.matched_grid, args.matched_velocities)}
    if args.full_resolution:  # midiformer's lossless side (trained once, for (a)) against MidiTok at its resolution
        tables["full"], resolutions["full"] = [], (FULL_GRID, None, FULL_GRID, FULL_VELOCITIES)
    for table, (ticks_per_beat, levels, grid, velocities) in resolutions.items():
        name = f"midiformer@{ticks_per_beat}" + ("" if levels is None else f"x{levels}")
        sides.setdefault(name, {"name": name, "kind": "midiformer", "ticks_per_beat": ticks_per_beat,
                                "velocity_levels": levels, "overrides": args.override})
        tables[table].append(name)
        for codec in args.codecs:
            options = miditok_options(grid, velocities)
            key = "default" if len(options) == 1 else f"{grid}x{velocities}"
            name = f"{codec}@{key}"
            sides.setdefault(name, {"name": name, "kind": "miditok", "codec": codec, "options": options,
                                    "tokens": name.replace("@", "_")})
            tables[table].append(name)
    return list(sides.values()), tables


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (f"{os.cpu_count()} cores ({model}){gpu}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def prepare(args: argparse.Namespace, sides: list[dict]) -> dict:
    """The training files (midiformer's store of --train: its train split) and the held-out copy."""
    from midiformer.data.store import Store, prepare_store

    cache_dir = args.work_dir / "cache"
    started = time.perf_counter()
    train_cfg = {"name": "midi_dir", "root": str(args.train.resolve()), "cache_dir": str(cache_dir),
                 "codec": {"ticks_per_beat": 96, "controls": [], "pitch_bend": False},  # the seed's seven types
                 "splits": SPLITS, "num_workers": args.threads}
    store = Store(prepare_store(train_cfg))
    splits = store.manifest["splits"]
    for split in ("train", "val"):
        if splits[split]["songs"] == 0:
            raise ConfigError(f"--train {args.train}: its store's {split} split holds no file (split by a hash of "
                              f"each path, {SPLITS}); use a larger folder")
    train_files = store.songs("train")
    print(f"training files: {len(train_files)} of {args.train} (the store's train split; val {splits['val']['songs']} "
          f"files for midiformer's validation), {time.perf_counter() - started:.0f} s", flush=True)

    source, candidates = quality_data.candidate_files(args.test and args.test.resolve(), args.train.resolve(), SPLITS)
    tokenizers = {s["name"]: quality_data.make_tokenizer(s["codec"], s["options"]) for s in sides if s["kind"] == "miditok"}
    resolutions = [(s["ticks_per_beat"], s["velocity_levels"]) for s in sides if s["kind"] == "midiformer"]
    held_out = quality_data.held_out_set(source, candidates, args.work_dir / "heldout", resolutions, tokenizers)
    if not held_out.files:
        raise ConfigError(f"held-out set ({args.test or 'the test split of ' + str(args.train)}): no file that every "
                          f"side reads ({len(held_out.excluded)} excluded)")
    folders = quality_data.source_folders(held_out.files)
    position = {f: i for i, f in enumerate(held_out.files)}  # song i of each stream (every kept file tokenizes)
    for name, tokenizer in tokenizers.items():  # tokenized once here; every side scores these very tokens
        stream = quality_data.token_stream(tokenizer, held_out.root, held_out.files)
        np.save(args.work_dir / f"heldout_{name.replace('@', '_')}.npy", stream.tokens)
        for folder, files in folders.items():  # a file's tokens are its own: the folder's are cut from the stream
            tokens = np.concatenate([stream.tokens[stream.offsets[position[f]]:stream.offsets[position[f] + 1]]
                                     for f in files])
            np.save(args.work_dir / f"heldout_{name.replace('@', '_')}__{folder}.npy", tokens)
    print(f"held-out files: {len(held_out.files)} from {source} ({len(held_out.excluded)} excluded), "
          f"{sum(held_out.notes.values()):,} notes, {sum(held_out.seconds.values()) / 60:.1f} min", flush=True)
    return {"work_dir": str(args.work_dir), "cache_dir": str(cache_dir), "train_root": str(args.train.resolve()),
            "train_files": train_files, "heldout_root": str(held_out.root), "heldout_files": len(held_out.files),
            "source_folders": folders, "held_out": held_out}


def run_all(sides: list[dict], shape: dict, paths: dict, threads: int) -> dict[str, dict]:
    """Every side in its own process, `threads` of them at once (one thread each); a status line a minute."""
    workers = max(1, min(threads, len(sides)))
    shape = {**shape, "threads": max(1, threads // workers)}
    worker_paths = {k: v for k, v in paths.items() if k != "held_out"}
    for side in sides:  # every run starts afresh: an old last.pt would be resumed, old metrics misread
        shutil.rmtree(Path(paths["work_dir"]) / side["name"], ignore_errors=True)
    results, started = {}, time.perf_counter()
    # a Pool, not a ProcessPoolExecutor: leaving the block for any reason (an error, Ctrl-C, SIGTERM, which
    # main() turns into SystemExit) terminates the workers instead of leaving them training as orphans
    with get_context("spawn").Pool(workers) as pool:
        running = {side["name"]: pool.apply_async(quality_sides.run_side, (side, shape, worker_paths)) for side in sides}
        while running:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(r.ready() for r in running.values()):
                time.sleep(1)
            for name in [name for name, result in running.items() if result.ready()]:
                results[name] = running.pop(name).get()
            if running:
                status = ", ".join(f"{name} {last_step(Path(paths['work_dir']) / name)}/{shape['steps']}"
                                   for name in sorted(running))
                print(f"[{(time.perf_counter() - started) / 60:5.1f} min] steps: {status}", flush=True)
    return results


def last_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return max((json.loads(line)["step"] for line in lines if line.strip()), default=0)
    except (OSError, ValueError):
        return 0


def figures(results: dict[str, dict], held_out: quality_data.HeldOut, folder_files: dict[str, list[str]]) -> None:
    """bits/note, bits/second and the unigram baseline's, on the shared denominators (in place); the same
    for each source folder scored on its own."""
    notes, seconds = sum(held_out.notes.values()), sum(held_out.seconds.values())
    for result in results.values():
        result.update(notes=notes, seconds=seconds, bits_per_note=result["total_bits"] / notes, bits_per_second=result["total_bits"] / seconds,
                      unigram_bits_per_note=result["unigram_total_bits"] / notes,
                      unigram_bits_per_second=result["unigram_total_bits"] / seconds,
                      per_note=result["targets"] / notes, notes_coded_share=result["notes_coded"] / notes)
        for folder, scored in result["by_folder"].items():
            files = folder_files[folder]
            scored.update(files=len(files), notes=sum(held_out.notes[f] for f in files),
                          seconds=sum(held_out.seconds[f] for f in files))
            scored.update(bits_per_note=scored["total_bits"] / scored["notes"],
                          bits_per_second=scored["total_bits"] / scored["seconds"])


def table(title: str, names: list[str], results: dict[str, dict]) -> str:
    lines = [f"\n{title}",
             "| side | bits/note | bits/second | unigram bits/note | unigram bits/s | rows or tokens/note | "
             "notes coded | params | train s | train CPU s | side CPU s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        r = results[name]
        lines.append(f"| {name} | {r['bits_per_note']:.2f} | {r['bits_per_second']:.1f} | {r['unigram_bits_per_note']:.2f} "
                     f"| {r['unigram_bits_per_second']:.1f} | {r['per_note']:.2f} | {r['notes_coded_share']:.1%} "
                     f"| {r['params'] / 1e6:.2f}M | {r['train_seconds']:.0f} | {r['train_cpu_seconds']:.0f} "
                     f"| {r['cpu_seconds_total']:.0f} |")
    ours = [n for n in names if results[n]["kind"] == "midiformer"]
    for other in (n for n in names if results[n]["kind"] == "miditok"):
        for name in ours:
            lines.append(f"{name} / {other} bits per note: {results[name]['bits_per_note'] / results[other]['bits_per_note']:.3f}x")
    return "\n".join(lines)


def folder_table(names: list[str], results: dict[str, dict]) -> str:
    """Bits/note of each side on each source folder scored as a held-out set of its own, and midiformer's
    ratio to the first MidiTok side (same denominators: the folder's notes by midiformer's reader)."""
    folders = list(results[names[0]]["by_folder"])
    if not folders:
        return ""
    ours = [n for n in names if results[n]["kind"] == "midiformer"]
    ratios = [(a, b) for b in names if results[b]["kind"] == "miditok" for a in ours][:len(ours)]  # to the first
    full = [n for n in names if n.endswith(f"@{FULL_GRID}x{FULL_VELOCITIES}")][:1]  # and lossless to full-resolution
    ratios += [(ours[0], b) for b in full]
    lines = ["\n(c) each source folder of the held-out set scored on its own: bits/note",
             "| folder | files | notes | " + " | ".join(names) + " | " + " | ".join(f"{a} / {b}" for a, b in ratios) + " |",
             "|---|---|---|" + "---|" * (len(names) + len(ratios))]
    for folder in folders:
        by = {n: results[n]["by_folder"][folder] for n in names}
        lines.append(f"| {folder} | {by[names[0]]['files']} | {by[names[0]]['notes']:,} | "
                     + " | ".join(f"{by[n]['bits_per_note']:.2f}" for n in names) + " | "
                     + " | ".join(f"{by[a]['bits_per_note'] / by[b]['bits_per_note']:.3f}x" for a, b in ratios) + " |")
    return "\n".join(lines)


def field_table(results: dict[str, dict]) -> str:
    ours = [r for r in results.values() if r["kind"] == "midiformer"]
    fields = list(ours[0]["bits_per_event_by_field"])
    lines = ["\nmidiformer: held-out bits per event, by field", "| side | " + " | ".join(fields) + " |",
             "|---|" + "---|" * len(fields)]
    lines += [f"| {r['name']} | " + " | ".join(f"{r['bits_per_event_by_field'][f]:.3f}" for f in fields) + " |"
              for r in ours]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # `kill`: the workers go too
    try:
        import miditok  # noqa: F401
        import symusic  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"{error.name} is not installed: pip install -e '.[bench]' (or make install)") from None
    started = time.perf_counter()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/bench_quality.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    commit = provenance.git_commit()  # at the start: the code the sides run, whatever is committed meanwhile
    print(f"bench-quality, {date}, commit {commit}\nmachine: {machine()}\ncommand: {command}", flush=True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    sides, tables = plan_sides(args)
    shape = {"steps": args.steps, "layers": args.layers, "d_model": args.d_model, "heads": args.heads,
             "context": args.context, "batch": args.batch, "lr": args.lr, "warmup": args.warmup,
             "min_lr_ratio": args.min_lr_ratio, "dropout": args.dropout, "seed": args.seed, "device": args.device}
    print(f"shape: {args.layers} layers, d_model {args.d_model}, {args.heads} heads, context {args.context}, batch "
          f"{args.batch}, {args.steps} steps, AdamW lr {args.lr} ({args.warmup} warm-up, cosine to "
          f"{args.min_lr_ratio:.0%}), fp32, dropout {args.dropout}\nsides: {', '.join(s['name'] for s in sides)}",
          flush=True)
    paths = prepare(args, sides)
    held_out = paths["held_out"]
    results = run_all(sides, shape, paths, args.threads)
    cpu = {"main": round(time.process_time(), 1), "sides": round(sum(r["cpu_seconds_total"] for r in results.values()), 1)}
    figures(results, held_out, paths["source_folders"])
    notes, seconds = sum(held_out.notes.values()), sum(held_out.seconds.values())
    print(f"\nheld-out: {len(held_out.files)} files, {notes:,} notes, {seconds / 60:.1f} min (midiformer's reader); "
          f"excluded: {held_out.excluded or 'none'}")
    print(table("(a) each codec at its default resolution", tables["default"], results))
    print(table(f"(b) matched resolution: {args.matched_grid} steps per beat, {args.matched_velocities} velocities",
                tables["matched"], results))
    if "full" in tables:
        print(table(f"(d) MidiTok at midiformer's full resolution: {FULL_GRID} positions per beat ({FULL_GRID // 2} past "
                    f"4 beats, MidiTok's layout), {FULL_VELOCITIES} velocities", tables["full"], results))
    print(folder_table(list(dict.fromkeys(name for names in tables.values() for name in names)), results))
    print(field_table(results))
    report = {
        "date": date, "commit": commit, "machine": machine(), "command": command, "wall_seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": cpu,
        "shape": shape, "threads": args.threads, "overrides": args.override, "tables": tables, "sides": results,
        "held_out": {"source": str(args.test or args.train), "files": len(held_out.files), "notes": notes,
                     "seconds": seconds, "per_file": {f: {"notes": held_out.notes[f], "seconds": held_out.seconds[f]}
                                                      for f in held_out.files}, "excluded": held_out.excluded,
                     "source_folders": paths["source_folders"]},
        "train": {"root": paths["train_root"], "files": len(paths["train_files"])},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{time.perf_counter() - started:.0f} s in all; CPU time {cpu['main']:.0f} s here + {cpu['sides']:.0f} s in "
          f"the sides (on idle cores, about the wall time of one thread each); written to {args.out}")


if __name__ == "__main__":
    exit_on_user_error(main)
