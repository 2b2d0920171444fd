"""Research scale: what preparation, start-up and evaluation cost as the corpus grows.

    make bench-scale                                   # N = 20,000 files (heavy on 2 cores: ~1 h)
    python benchmarks/bench_scale.py --files 2000      # N = 2,000 (and N/10 = 200)
    python benchmarks/bench_scale.py --files 2000 --work /tmp/scale --keep
    python benchmarks/bench_scale.py --corpus ~/lakh_midi        # your own corpus as N, a tenth of it as N/10

Builds a synthetic corpus of N distinct files from the dev corpus (each dev song transposed by one of
13 shifts and time-stretched by a factor, written by our own decode), then at N/10 and at N prints:
prepare files/s with 1 worker and with every core, peak RSS of prepare and of a 1-step training run,
store bytes, seconds from launch to the end of the first training step, and evaluate events/s on the
test split. Each figure comes from a fresh process (peak RSS: the largest process of it, from wait4).
Goals (issue 12): prepare linear in N; start-up and peak RSS of training independent of N (25 %).
With --miditok it also prints preparation speed against MidiTok REMI in one process (bench_prep).
Printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from midiformer.common import dev_corpus

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = dev_corpus(REPO)
SHIFTS = (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6)  # semitones; a song is never shifted out of 0..127
STRETCH_STEP = 0.04  # variant v plays 1 + 0.04 * (v // 13) times slower


# --- the synthetic corpus -----------------------------------------------------------------------

def variant(song: np.ndarray, number: int) -> np.ndarray:
    """Variant `number` of a song's events: transposed (pitched notes, not drums) and time-stretched,
    re-framed by the codec (long gaps become time_shift rows again)."""
    from midiformer.codec import events

    type_, channel, note = song[:, 0], song[:, events.COLUMN["channel"]], events.COLUMN["note"]
    pitched = np.isin(type_, (events.NOTE_ON, events.NOTE_OFF)) & (channel != events.DRUM_CHANNEL)
    shift = SHIFTS[number % len(SHIFTS)]
    song = song.astype(np.int64)
    if pitched.any() and 0 <= song[pitched, note].min() + shift and song[pitched, note].max() + shift <= 127:
        song[pitched, note] += shift
    factor = 1.0 + STRETCH_STEP * (number // len(SHIFTS))
    body = ~np.isin(type_, (events.START, events.END, events.TIME_SHIFT))
    ticks = events.grid_ticks(song)
    song = events.stretch_durations(song, ticks, factor)
    ticks = np.rint(ticks * factor).astype(np.int64)
    return events.frame_rows(song[body], ticks[body], int(ticks[-1]))


def build_corpus(n_files: int, folder: Path) -> list[str]:
    """N distinct files in `folder`, in a shuffled order of (variant, dev file); their relative paths."""
    from midiformer.codec import events, to_midi

    dev = sorted(DEV_DATA.rglob("*.mid"))
    if not dev:
        sys.exit(f"error: no dev corpus at {DEV_DATA} (set MIDIFORMER_DEV_DATA)")
    jobs = [(v, f) for v in range(-(-n_files // len(dev))) for f in range(len(dev))]
    order = np.random.default_rng(0).permutation(len(jobs))[:n_files]
    songs: dict[int, np.ndarray] = {}
    names = []
    for k in order:
        number, index = jobs[k]
        if index not in songs:
            songs[index] = events.encode(dev[index])
        name = f"{dev[index].parent.name}/v{number:03d}_{dev[index].name}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        to_midi.decode(variant(songs[index], number), folder / name)
        names.append(name)
    return names


def subset(names: list[str], source: Path, folder: Path) -> None:
    """The first files of the larger corpus, hard-linked (same bytes, same modification times), or
    symbolic links where the corpus is on another file system."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source / name, folder / name)
        except OSError:
            os.symlink((source / name).resolve(), folder / name)


# --- measured child processes ---------------------------------------------------------------------

def measured(command: list[str], threads: int) -> tuple[float, float, float]:
    """(launch unix time, wall seconds, peak RSS in MiB of the largest process) of a child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    launched, started = time.time(), time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: {' '.join(command)} failed:\n{output.decode(errors='replace')[-3000:]}")
    return launched, wall, usage.ru_maxrss / 1024


PREPARE = """
import sys, time
from hydra import compose, initialize_config_dir
from midiformer.common import CONF_DIR
from midiformer.data.store import prepare_store
with initialize_config_dir(CONF_DIR, version_base=None):  # the train app's data config: the same store key
    cfg = compose("config", overrides=["data=midi_dir", f"data.root={sys.argv[1]}", f"data.cache_dir={sys.argv[2]}",
                                       f"data.num_workers={sys.argv[3]}"])
started = time.perf_counter()
path = prepare_store(cfg.data)
open(sys.argv[4], "w").write(f"{time.perf_counter() - started} {path}")
"""


def prepare(root: Path, cache: Path, workers: int, threads: int, scratch: Path, repeats: int = 1) -> dict:
    """Prepare in a fresh process (a fresh cache each time): seconds of preparation itself (imports left
    out), peak RSS, the store. With repeats, the fastest run: the one least slowed by the neighbours."""
    runs = []
    for attempt in range(repeats):
        result, attempt_cache = scratch / "prepare.txt", cache.with_name(f"{cache.name}-{attempt}")
        _, _, rss = measured([sys.executable, "-c", PREPARE, str(root), str(attempt_cache), str(workers),
                              str(result)], threads)
        seconds, store = result.read_text().split(" ", 1)
        runs.append({"seconds": float(seconds), "rss_mib": rss, "store": Path(store)})
        if attempt:
            shutil.rmtree(attempt_cache)
    return {**min(runs, key=lambda run: run["seconds"]), "store": runs[0]["store"]}  # the other caches are gone


def first_step(root: Path, cache: Path, run_dir: Path, args) -> tuple[float, float]:
    """(seconds from launch to the end of the first step, peak RSS in MiB) of a 1-step training run."""
    train = [sys.executable, "-m", "midiformer.train", f"model={args.model}", f"data.seq_len={args.seq_len}",
             "data=midi_dir", f"data.root={root}", f"data.cache_dir={cache}", "trainer.max_steps=1",
             "trainer.val_batches=1", "logger.tensorboard=false", "logger.progress=false",
             f"trainer.num_threads={args.threads}", f"hydra.run.dir={run_dir}"]
    launched, _, train_rss = measured(train, args.threads)
    summary = json.loads((run_dir / "summary.json").read_text())
    return summary["first_step_at"] - launched, train_rss


def evaluate_speed(store: Path, checkpoint: Path, run_dir: Path, threads: int) -> dict:
    """Evaluate events/s of a checkpoint on the store's test split (val or train where a tiny N has none)."""
    splits = json.loads((store / "manifest.json").read_text())["splits"]
    split = next(name for name in ("test", "val", "train") if splits[name]["events"] > 1)
    report = run_dir / "eval.json"
    evaluate = [sys.executable, "-m", "midiformer.evaluate", f"checkpoint={checkpoint}", f"split={split}",
                "device=cpu", f"output={report}", f"hydra.run.dir={run_dir / 'evaluate'}"]
    measured(evaluate, threads)
    scored = json.loads(report.read_text())
    return {"eval_events_per_s": scored["events_per_s"], "eval_events": scored["events"], "eval_split": split}


def measure_prepare(n_files: int, root: Path, work: Path, args) -> dict:
    print(f"\n--- N = {n_files:,} files ---", flush=True)
    one = prepare(root, work / f"cache1-{n_files}", 1, args.threads, work, args.repeats)
    print(f"prepare, 1 worker: {one['seconds']:.1f} s, {one['rss_mib']:.0f} MiB", flush=True)
    every = prepare(root, work / f"cache{args.workers}-{n_files}", args.workers, args.threads, work, args.repeats)
    print(f"prepare, {args.workers} workers: {every['seconds']:.1f} s, {every['rss_mib']:.0f} MiB", flush=True)
    store_bytes = sum(f.stat().st_size for f in every["store"].iterdir())
    shutil.rmtree(work / f"cache1-{n_files}-0")
    manifest = json.loads((every["store"] / "manifest.json").read_text())
    return {"files": n_files, "events": manifest["events"], "files_ok": manifest["files_ok"],
            "prepare_1_files_per_s": n_files / one["seconds"], "prepare_all_files_per_s": n_files / every["seconds"],
            "prepare_1_rss_mib": one["rss_mib"], "prepare_all_rss_mib": every["rss_mib"],
            "store_bytes": store_bytes, "root": str(root), "cache": str(work / f"cache{args.workers}-{n_files}-0"),
            "store": str(every["store"])}


def measure_training(rows: list[dict], work: Path, args) -> None:
    """Start-up and peak RSS of 1-step runs, the sizes taken in turns (N/10, N, N/10, ...) so that a
    change in the machine's load falls on both alike; the fastest of --repeats each. Then evaluate."""
    runs: dict[int, list[tuple[float, float]]] = {row["files"]: [] for row in rows}
    for attempt in range(args.repeats):
        for row in rows:
            run_dir = work / f"run-{row['files']}" / str(attempt)
            runs[row["files"]].append(first_step(Path(row["root"]), Path(row["cache"]), run_dir, args))
    for row in rows:
        row["startup_s"], row["train_rss_mib"] = min(runs[row["files"]])
        row["startup_runs_s"] = [seconds for seconds, _ in runs[row["files"]]]
        run_dir = work / f"run-{row['files']}"
        row.update(evaluate_speed(Path(row["store"]), run_dir / "0" / "checkpoints" / "last.pt", run_dir, args.threads))
        print(f"N = {row['files']:,}: start-up {row['startup_s']:.1f} s (runs: "
              f"{', '.join(f'{t:.1f}' for t in row['startup_runs_s'])}), {row['train_rss_mib']:.0f} MiB; "
              f"evaluate {row['eval_events_per_s']:,.0f} events/s", flush=True)


def miditok_ratio(repeats: int = 3) -> str:
    """Notes/s of preparing the dev corpus against MidiTok REMI's tokenizing it, one process each; each
    side the fastest of `repeats` runs, taken in turns (a few seconds each: one run is mostly noise)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_prep import bench_midiformer, bench_miditok

    runs = [(bench_midiformer(DEV_DATA, 1), bench_miditok(DEV_DATA)) for _ in range(repeats)]
    ours = min((run[0] for run in runs), key=lambda side: side["seconds"])
    theirs = min((run[1] for run in runs), key=lambda side: side["seconds"])
    ratio = (ours["notes"] / ours["seconds"]) / (theirs["notes"] / theirs["seconds"])
    return (f"dev corpus, one process, fastest of {repeats}: midiformer {ours['notes'] / ours['seconds']:,.0f} notes/s, "
            f"MidiTok REMI {theirs['notes'] / theirs['seconds']:,.0f} notes/s: {ratio:.2f}x (goal: 5x)")


def table(rows: list[dict], workers: int) -> str:
    lines = ["| files | events | prepare files/s, 1 worker | prepare files/s, " + f"{workers} workers | "
             "prepare peak RSS (1 / all) | store | launch to first step | train peak RSS | evaluate events/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['files']:,} | {r['events']:,} | {r['prepare_1_files_per_s']:.0f} | "
                     f"{r['prepare_all_files_per_s']:.0f} | {r['prepare_1_rss_mib']:.0f} / {r['prepare_all_rss_mib']:.0f} MiB"
                     f" | {r['store_bytes'] / 2**20:,.0f} MiB | {r['startup_s']:.1f} s | {r['train_rss_mib']:.0f} MiB | "
                     f"{r['eval_events_per_s']:,.0f} |")
    small, large = rows
    lines += ["", f"N / (N/10): prepare files/s {large['prepare_1_files_per_s'] / small['prepare_1_files_per_s']:.2f}x "
              f"(1 worker; linear: 1.00x), {workers} workers / 1 worker at N: "
              f"{large['prepare_all_files_per_s'] / large['prepare_1_files_per_s']:.2f}x (goal 1.8x on 2 cores), "
              f"start-up {large['startup_s'] / small['startup_s']:.2f}x, train peak RSS "
              f"{large['train_rss_mib'] / small['train_rss_mib']:.2f}x (goal: within 1.25x)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000, help="N: files of the large corpus (also N/10)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the 'all workers' prepare")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the train and evaluate runs")
    parser.add_argument("--model", default="small", help="conf/model preset of the 1-step training run")
    parser.add_argument("--seq-len", type=int, default=256, help="data.seq_len of that run (model=tiny: 64)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (corpora, stores, runs)")
    parser.add_argument("--miditok", action="store_true", help="also prepare speed against MidiTok REMI")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="measure an existing folder of MIDI files as N (and a random tenth of it) instead")
    parser.add_argument("--repeats", type=int, default=1, help="runs of prepare and of the 1-step training per "
                        "figure; the fastest is shown (the one least slowed by other processes)")
    parser.add_argument("--build", type=Path, default=None, help=argparse.SUPPRESS)  # the corpus-building child
    args = parser.parse_args()
    if args.build is not None:
        names = build_corpus(args.files, args.build)
        (args.build / "files.txt").write_text("".join(f"{name}\n" for name in names))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.corpus is not None:  # someone's own corpus: N is its size, N/10 a random tenth, linked
            from midiformer.data.corpus import find_midi_files

            files = find_midi_files(args.corpus)
            names = [files[i] for i in np.random.default_rng(0).permutation(len(files))]
            args.files, large = len(names), args.corpus.resolve()
        else:  # built in a child: Linux carries a parent's peak RSS into its children, so this one stays small
            large, started = work / f"corpus-{args.files}", time.perf_counter()
            subprocess.run([sys.executable, __file__, "--build", str(large), "--files", str(args.files)], check=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
            names = (large / "files.txt").read_text().splitlines()
            (large / "files.txt").unlink()
            print(f"built {args.files:,} distinct files in {time.perf_counter() - started:.0f} s under {work}")
        if args.files < 100:
            sys.exit(f"error: {args.files} files: need at least 100 (N/10 files must fill the splits)")
        subset(names[: args.files // 10], large, work / f"corpus-{args.files // 10}")
        sizes = ((args.files // 10, work / f"corpus-{args.files // 10}"), (args.files, large))
        rows = [measure_prepare(n, root, work, args) for n, root in sizes]
        measure_training(rows, work, args)
        print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
              f"python {platform.python_version()}, model={args.model}, {args.threads} torch thread(s)\n")
        print(table(rows, args.workers))
        if args.miditok:
            print("\n" + miditok_ratio(max(args.repeats, 3)))
        (work / "bench_scale.json").write_text(json.dumps(rows, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
