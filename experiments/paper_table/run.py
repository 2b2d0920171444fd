"""make paper-table — train every claim's arms at CPU scale and write RESULTS.md with an honest verdict.

    make paper-table                                        # the whole table, each claim in its regime
    python experiments/paper_table/run.py --claims scalenorm,augmentation --seeds 0,1,2 --steps 2000
    python experiments/paper_table/run.py --claims augmentation --subset 0.05 --steps 600
    python experiments/paper_table/run.py --steps 20000 --short-steps 20000 model=base trainer.device=cuda

Every claim trains in its own regime (claims.py: an overfitting subset, a deep narrow model, a late
SWA phase, ...). Trailing arguments are training overrides applied to every arm (Hydra syntax). Runs
go to --out/<regime>/<arm>/seed<N>; each claim's curves go to <claim>.png beside --results; a finished run with the same config is reused, an unfinished one resumes, so a
killed table continues where it stopped. The claims and the judging rule are in claims.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from claims import (
    CLAIMS,
    CONTINUATION,
    OVERFIT,
    Arm,
    Claim,
    Comparison,
    ContinuationClaim,
    Regime,
    continuation_verdict,
    verdict,
)
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf

from midiformer import provenance
from midiformer.common import ConfigError, exit_on_user_error
from midiformer.data.store import Store
from midiformer.generate.app import score_continuations
from midiformer.sweeps.plots import arms_png
from midiformer.sweeps.report import make_report, mean_std_text
from midiformer.sweeps.runs import Run, read_run
from midiformer.train.loop import train

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger("paper_table")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="experiments/paper_table/run.py", description=__doc__.split("\n\n")[0])
    names = [c.name for c in (*CLAIMS, CONTINUATION)]
    parser.add_argument("--claims", default=",".join(names),
                        help="comma-separated claims to run (default: all): " + ", ".join(names))
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds, each arm trained once per seed")
    parser.add_argument("--seeds-when-unclear", type=int, default=3, metavar="N",
                        help="a claim with no clear difference after --seeds gets more seeds, up to N in all (the "
                             "next ones after the largest of --seeds); 0: never")
    parser.add_argument("--steps", type=int, default=240,
                        help="training steps per run (trainer.max_steps; x2 in the overfit and SWA regimes)")
    parser.add_argument("--subset", type=float, default=0.1,
                        help="the overfit regime's training share of all files, cut from the default 0.9 (val and test keep theirs)")
    parser.add_argument("--depth", type=int, default=10, help="blocks of the deep regime's narrow model")
    parser.add_argument("--width", type=int, default=64, help="d_model of the deep regime's narrow model")
    parser.add_argument("--short-steps", type=int, default=24,
                        help="steps for the mixed-precision arms (on a CPU, bf16 speed depends on the CPU: see "
                             "docs/paper-table.md)")
    parser.add_argument("--primer-seconds", type=float, default=4.0,
                        help="the continuation claim: seconds of each held-out song given as the primer")
    parser.add_argument("--continue-seconds", type=float, default=8.0,
                        help="the continuation claim: seconds of music each sample continues for")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "paper_table", help="the run folders")
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    parser.add_argument("overrides", nargs="*", help="training overrides for every arm, e.g. model=base")
    args = parser.parse_args(argv)
    known = {c.name: c for c in (*CLAIMS, CONTINUATION)}
    unknown = [name for name in args.claims.split(",") if name not in known]
    if unknown:
        parser.error(f"--claims: {', '.join(unknown)} unknown; choose from {', '.join(known)}")
    if not 0 < args.subset < 0.9:
        parser.error(f"--subset: {args.subset} is not a training share in (0, 0.9)")
    if args.depth < 1 or args.width < 2 or args.width % 2:
        parser.error(f"--depth {args.depth} --width {args.width}: need at least 1 block and an even width")
    chosen = [known[name] for name in args.claims.split(",")]
    args.claims = [claim for claim in chosen if isinstance(claim, Claim)]  # judged on validation bits
    args.samples = [claim for claim in chosen if isinstance(claim, ContinuationClaim)]  # judged on continuations
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    return args


def regime_overrides(regime: Regime, args: argparse.Namespace) -> list[str]:
    options = {"subset": args.subset, "rest": round(0.9 - args.subset, 6), "depth": args.depth, "width": args.width}
    return [override.format(**options) for override in regime.overrides]


def regime_steps(regime: Regime, args: argparse.Namespace) -> int:
    return args.short_steps if regime.short else round(regime.steps_factor * args.steps)


def regime_text(regime: Regime, args: argparse.Namespace) -> str:
    return regime.text.format(subset=args.subset, depth=args.depth, width=args.width, steps=regime_steps(regime, args))


def arm_overrides(regime: Regime, arm: Arm, seed: int, args: argparse.Namespace) -> list[str]:
    steps = args.short_steps if arm.short else regime_steps(regime, args)
    budget = [f"trainer.max_steps={steps}", f"trainer.val_every={max(1, steps // 5)}", "trainer.ckpt_every=0"]
    if arm.short:  # a warm-up longer than the run would leave the learning rate near 0 throughout
        budget.append(f"optim.warmup_steps={max(1, steps // 5)}")
    # --steps wins over trainer.max_steps; the command line's overrides over the regime's
    return [*arm.overrides, *regime_overrides(regime, args), *args.overrides, f"seed={seed}", *budget]


def run_arm(regime: Regime, arm: Arm, seed: int, args: argparse.Namespace) -> Run:
    """Train one arm of a regime for one seed, or reuse the run already there with this config."""
    overrides = arm_overrides(regime, arm, seed, args)
    try:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    except HydraException as error:
        raise ConfigError(f"{regime.name}/{arm.name}: {' '.join(overrides)}: {str(error).splitlines()[0]}") from error
    run_dir = args.out / regime.name / arm.name / f"seed{seed}"
    existing = run_dir / "config.yaml"
    if existing.exists() and existing.read_text() != OmegaConf.to_yaml(cfg, resolve=True):
        raise ConfigError(f"{run_dir} holds a run with another config (other --steps or overrides?); "
                          f"pass another --out or delete it")
    run = read_run(run_dir) if existing.exists() else None
    if run is None or run.status != "finished":
        train(cfg, run_dir)
        run = read_run(run_dir)
    return run


Results = dict[tuple[str, str], dict[int, Run]]  # (regime, arm) -> seed -> run


def values(runs: dict[int, Run], key: str) -> list[float]:
    return [runs[seed].number(key) for seed in sorted(runs)]


def spread(xs: list[float], digits: int) -> str:
    return mean_std_text(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, digits) if xs else "—"


def claim_arms(claim: Claim) -> list[Arm]:
    return list({arm.name: arm for arm in (claim.reference, claim.treatment, *claim.context)}.values())


def train_val_gap(run: Run) -> float | None:
    """Validation minus training bits/event at the last validation: how far the run overfits."""
    val_steps, val = run.curve("val/bits_per_event")
    train = dict(zip(*run.curve("train/bits_per_event")))
    last = next((s for s in reversed(val_steps) if s in train), None)
    return None if last is None else val[val_steps.index(last)] - train[last]


def overfitting(runs: dict[int, Run]) -> float | None:
    """Final minus best validation bits/event, mean over seeds: above 0 when the curve turned up."""
    pairs = [(run.number("final_val_bits_per_event"), run.number("best_val_bits_per_event")) for run in runs.values()]
    diffs = [final - best for final, best in pairs if final is not None and best is not None]
    return statistics.fmean(diffs) if diffs else None


def comparison_of(claim: Claim, results: Results) -> Comparison:
    """The claim's metric per seed of its reference and its treatment (the seeds both arms have)."""
    reference = results[(claim.regime.name, claim.reference.name)]
    treatment = results[(claim.regime.name, claim.treatment.name)]
    seeds = sorted(set(reference) & set(treatment))
    return Comparison(values({s: reference[s] for s in seeds}, claim.reference_metric),
                      values({s: treatment[s] for s in seeds}, claim.treatment_metric))


def unclear_claims(claims: list[Claim], results: Results) -> list[Claim]:
    """The claims whose difference is within the noise of their seeds (worth another seed)."""
    unclear = []
    for claim in claims:
        comparison = comparison_of(claim, results)
        if None not in comparison.reference + comparison.treatment and comparison.direction() == "no clear difference":
            unclear.append(claim)
    return unclear


def claim_row(claim: Claim, results: Results, args, png: str) -> list[str]:
    reference = results[(claim.regime.name, claim.reference.name)]
    treatment = results[(claim.regime.name, claim.treatment.name)]
    comparison = comparison_of(claim, results)
    ref_label, treat_label = (f"`{claim.reference.name}`", f"`{claim.treatment.name}`")
    if claim.reference is claim.treatment:  # one run, two sets of weights (SWA)
        ref_label, treat_label = f"{ref_label} final weights", f"{treat_label} averaged"
    cells = [claim.name, f"“{claim.statement}”", regime_text(claim.regime, args)]
    tail = [f"[curve]({png})", claim.at_scale]
    if None in comparison.reference + comparison.treatment:
        missing = claim.treatment_metric if None in comparison.treatment else claim.reference_metric
        return cells + [ref_label, treat_label, "—", f"not measurable here: a run has no {missing} (too few steps?)",
                        *tail]
    speed = statistics.fmean(values(treatment, "events_per_s")) / statistics.fmean(values(reference, "events_per_s"))
    summary = next(iter(treatment.values())).summary
    device, gpu = summary.get("device", "cpu"), (summary.get("machine") or {}).get("cuda")
    device = f"{device} ({gpu})" if device.startswith("cuda") and gpu else device  # the speed-up names its GPU
    stderr = f" ± {comparison.stderr:.3f}" if comparison.stderr is not None else ""
    judged = verdict(claim, comparison, speed if claim.kind == "same_loss_faster" else None, device,
                     overfitting(reference) if claim.regime is OVERFIT else None)
    if claim.regime is OVERFIT:
        gaps = [f"{name} {spread([g for g in map(train_val_gap, runs.values()) if g is not None], 3)}"
                for name, runs in ((claim.reference.name, reference), (claim.treatment.name, treatment))]
        judged += f"; val - train gap: {', '.join(gaps)}"
    return cells + [f"{ref_label} {spread(comparison.reference, 3)}", f"{treat_label} {spread(comparison.treatment, 3)}",
                    f"{comparison.mean_diff:+.3f}{stderr} ({comparison.relative:+.1%})", judged, *tail]


# --- the claim about samples -----------------------------------------------------------------------

SAMPLES = 2  # continuations of each held-out primer (conf/generate.yaml num_samples)


def continuation_options(args: argparse.Namespace, seed: int) -> tuple[str, ...]:
    """Each held-out primer: --primer-seconds of its song, continued for --continue-seconds of music."""
    return (f"primer.seconds={args.primer_seconds}", f"seconds={args.continue_seconds}", "n_events=4096",
            f"num_samples={SAMPLES}", "progress=false", f"seed={seed}")


def held_out_primers(run: Run, folder: Path) -> Path:
    """A folder of links to the files of the run's test split: songs its model never trained on."""
    store = Store(run.summary["store"])
    root = Path(store.manifest["root"])
    songs = store.songs("test")
    if not songs:
        raise ConfigError(f"{store.path}: its test split holds no song, so there is no held-out primer to continue "
                          f"(data.splits, or a larger corpus)")
    folder.mkdir(parents=True, exist_ok=True)
    for name in songs:
        link = folder / name.replace("/", "__")
        if not link.is_symlink():
            link.symlink_to(root / name)
    return folder


def continuation_summary(claim: ContinuationClaim, run: Run, seed: int, args: argparse.Namespace) -> dict:
    """The continuation summary (generate/scoring.py) of a finished run's final weights, and of an untrained
    model of its shape, on the held-out primers; reused when already written."""
    out = run.path / "continuations"
    if not (out / "summary.json").is_file():
        log.info("%s: continuing the held-out primers with %s/%s seed %d", claim.name, claim.regime.name,
                 claim.arm.name, seed)
        primers = held_out_primers(run, args.out / claim.regime.name / "held_out_primers")
        score_continuations(run.path / "checkpoints" / "last.pt", primers, out, continuation_options(args, seed))
    return json.loads((out / "summary.json").read_text())


def continuation_section(claim: ContinuationClaim, runs: dict[int, Run], args: argparse.Namespace) -> list[str]:
    summaries = {seed: continuation_summary(claim, runs[seed], seed, args) for seed in sorted(runs)}
    tables = {seed: summary["table"] for seed, summary in summaries.items()}

    columns = ("real", "model", "untrained")

    def defined(seed: int, metric: str) -> bool:  # e.g. no chord rate for samples without a note
        return all(tables[seed][metric].get(column, {}).get("mean") is not None for column in columns)

    def per_seed(metric: str, column: str) -> list[float]:
        return [tables[seed][metric][column]["mean"] for seed in sorted(tables) if defined(seed, metric)]

    comparisons, lines, undefined = {}, [], []
    for metric in claim.metrics:
        missing = [seed for seed in sorted(tables) if not defined(seed, metric)]
        if missing:
            undefined.append(f"{metric} is undefined for seed {', '.join(map(str, missing))} (a column without a value: "
                             f"e.g. the untrained model played no note) and is compared over the other seeds")
        real, model, untrained = (per_seed(metric, c) for c in columns)
        comparisons[metric] = Comparison([abs(u - r) for u, r in zip(untrained, real)],
                                         [abs(m - r) for m, r in zip(model, real)])
        stderr = comparisons[metric].stderr
        lines.append(f"| {metric} | {spread(real, 3)} | {spread(model, 3)} | {spread(untrained, 3)} | "
                     f"{comparisons[metric].mean_diff:+.3f}{f' ± {stderr:.3f}' if stderr is not None else ''} |")
    primers = next(iter(summaries.values()))["primers"]
    return [
        f"## {claim.name}: “{claim.statement}”", "",
        f"Each held-out song (the test split, {primers} files) gives a primer of its first {args.primer_seconds:g} s, "
        f"continued for {args.continue_seconds:g} s of music, {SAMPLES} samples, by the final weights of the `{claim.arm.name}` runs "
        f"({regime_text(claim.regime, args)}) and by an untrained model of the same shape; `real` is the "
        f"song's own next {args.continue_seconds:g} s. Mean ± std over seeds of each seed's mean over primers x samples. Δ = the "
        f"trained model's distance to `real` minus the untrained model's, paired by seed (negative: closer). "
        f"Metrics: generate/metrics.py (chord_rate: share of onsets with 3 or more pitches sounding; "
        f"onset_grid_distance_to_primer: distance between the onset-in-beat histograms of the continuation and "
        f"the primer). Every sample's figures: `{relative(str(next(iter(runs.values())).path / 'continuations'))}`.",
        "", "| metric | real continuation | trained | untrained | Δ distance to real |", "|---|---:|---:|---:|---:|",
        *lines, "", *[f"{note}." for note in undefined], *([""] if undefined else []),
        f"**Verdict:** {continuation_verdict(comparisons)}. At scale: {claim.at_scale}.", ""]


def arm_rows(results: Results, arms: dict[tuple[str, str], Arm]) -> list[str]:
    keys = [("best_val_bits_per_event", 3), ("final_val_bits_per_event", 3), ("final_swa_val_bits_per_event", 3),
            ("final_train_loss", 3), ("steps", 0), ("events_per_s", 0), ("wall_time_s", 0)]
    lines = ["| regime | arm | overrides | seeds | best val bits/event | final val | final SWA val | final train loss "
             "| steps | events/s | wall time (s) |", "|---|---|---|---|" + "---:|" * len(keys)]
    for (regime, name), runs in results.items():
        cells = [spread([x for x in values(runs, key) if x is not None], digits) for key, digits in keys]
        lines.append(f"| {regime} | {name} | `{' '.join(arms[(regime, name)].overrides)}` | "
                     f"{', '.join(map(str, sorted(runs)))} | " + " | ".join(cells) + " |")
    return lines


def relative(argument: str) -> str:
    """An absolute path (alone or as an override's value) relative to the repository: RESULTS.md names no absolute paths."""
    key, sep, value = argument.rpartition("=") if "=" in argument else ("", "", argument)
    return f"{key}{sep}{os.path.relpath(value, REPO)}" if value.startswith("/") else argument


def trained_minutes(results: Results) -> float:
    return sum(run.number("wall_time_s") or 0.0 for runs in results.values() for run in runs.values()) / 60


def write_results(args, results: Results, arms, minutes: float, report: Path, commit: str | None) -> None:
    pngs = {}
    for claim in args.claims:
        curves = [(arm.name, list(results[(claim.regime.name, arm.name)].values())) for arm in claim_arms(claim)]
        png = arms_png(curves, f"{claim.name}: {regime_text(claim.regime, args)}",
                       args.results.parent / f"{claim.name}.png", claim.curve_keys)
        pngs[claim.name] = os.path.relpath(png, args.results.parent)
    rows = [claim_row(claim, results, args, pngs[claim.name]) for claim in args.claims]
    machine = provenance.machine()
    command = "python experiments/paper_table/run.py " + shlex.join(relative(a) for a in sys.argv[1:])
    lines = [
        "# The seed's claims, measured", "",
        f"Written by `{command.strip()}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"commit `{commit}`, machine: {machine['platform']}, {machine['cpus']} CPUs "
        f"({machine['cpu']['model']}; bf16 features: {', '.join(machine['cpu']['bf16_flags'] or []) or 'none'}), "
        f"GPU: {machine['cuda'] or 'none'}. This invocation took {minutes:.0f} min; the runs of the table trained for "
        f"{trained_minutes(results):.0f} min in all (their wall times summed: a run reused from an earlier invocation "
        f"into the same --out counts as it was trained).", "",
        f"Budget: --steps {args.steps} (x2 in the overfit and SWA regimes; {args.short_steps} for the mixed-precision "
        f"arms), seeds {', '.join(map(str, args.seeds))} (up to {args.seeds_when_unclear} for a claim with no clear "
        f"difference after them: the seeds column of Every arm says which), --subset {args.subset}, --depth {args.depth}, "
        f"--width {args.width}; overrides for every arm: `{' '.join(map(relative, args.overrides)) or 'none'}` "
        f"(defaults: model=small, data=bach). Each claim is measured in its regime (overrides for both its arms, "
        f"claims.py). Numbers are the best validation bits/event of each run (lower is better; SWA: the final "
        f"averaged against the final trained weights of the same runs), mean ± std over seeds. Δ = treatment − "
        f"reference, paired by seed, ± its standard error. A difference counts when every seed agrees on its sign "
        f"and |Δ| exceeds two standard errors; \"same loss\" means within 1% (or two standard errors).", "",
        "| claim | the seed says | regime | reference | treatment | Δ bits/event | verdict | curves | at scale |",
        "|---|---|---|---|---|---|---|---|---|",
        *["| " + " | ".join(cells) + " |" for cells in rows], "",
        *[line for claim in args.samples
          for line in continuation_section(claim, results[(claim.regime.name, claim.arm.name)], args)],
        "## Every arm", "", *arm_rows(results, arms), "",
        f"Validation curves of every run: `{relative(str(report.resolve()))}` "
        f"(python -m midiformer.report {relative(str(args.out.resolve()))}).", "",
        (Path(__file__).resolve().parent / "NOTES.md").read_text().strip(), "",
    ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    args = parse_args(argv)
    arms = {(claim.regime.name, arm.name): arm for claim in args.claims for arm in claim_arms(claim)}
    arms.update({(claim.regime.name, claim.arm.name): claim.arm for claim in args.samples})
    regimes = {claim.regime.name: claim.regime for claim in (*args.claims, *args.samples)}
    results: Results = {key: {} for key in arms}
    started, total = time.perf_counter(), len(arms) * len(args.seeds)
    commit = provenance.git_commit()  # the code the runs train with, not what is committed while they do
    for seed in args.seeds:  # every arm once before any arm twice: a table cut short still compares
        for (regime, name), arm in arms.items():
            log.info("[%d/%d] %s/%s, seed %d", sum(map(len, results.values())) + 1, total, regime, name, seed)
            results[(regime, name)][seed] = run_arm(regimes[regime], arm, seed, args)
    more_seeds = [max(args.seeds) + 1 + i for i in range(max(0, args.seeds_when_unclear - len(args.seeds)))]
    unclear = unclear_claims(args.claims, results) if more_seeds else []
    if unclear:
        log.info("no clear difference yet: %s; seeds %s too", ", ".join(c.name for c in unclear), more_seeds)
    for seed in more_seeds:
        for claim in unclear:
            for arm in claim_arms(claim):
                if seed not in results[(claim.regime.name, arm.name)]:
                    log.info("%s/%s, seed %d (claim %s)", claim.regime.name, arm.name, seed, claim.name)
                    results[(claim.regime.name, arm.name)][seed] = run_arm(claim.regime, arm, seed, args)
    report = make_report([args.out], args.out)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    write_results(args, results, arms, (time.perf_counter() - started) / 60, report, commit)
    log.info("written: %s", args.results)


if __name__ == "__main__":
    exit_on_user_error(main)
