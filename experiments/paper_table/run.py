"""make paper-table — train every claim's arms at CPU scale and write RESULTS.md with an honest verdict.

    make paper-table                                        # ~1 h on 2 cores: model=small, data=bach
    python experiments/paper_table/run.py --claims scalenorm,augmentation --seeds 0,1,2 --steps 2000
    python experiments/paper_table/run.py --steps 20000 --short-steps 20000 model=base trainer.device=cuda

Trailing arguments are training overrides applied to every arm (Hydra syntax). Runs go to
--out/<arm>/seed<N>; a finished run with the same config is reused, an unfinished one resumes, so a
killed table continues where it stopped. The claims and the judging rule are in claims.py.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from claims import CLAIMS, Arm, Claim, Comparison, verdict
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from midiformer import provenance
from midiformer.common import ConfigError, exit_on_user_error
from midiformer.sweeps.report import make_report, mean_std_text
from midiformer.sweeps.runs import Run, read_run
from midiformer.train.loop import train

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger("paper_table")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="experiments/paper_table/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", default=",".join(c.name for c in CLAIMS),
                        help="comma-separated claims to run (default: all): " + ", ".join(c.name for c in CLAIMS))
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds, each arm trained once per seed")
    parser.add_argument("--steps", type=int, default=240, help="training steps per run (trainer.max_steps)")
    parser.add_argument("--short-steps", type=int, default=24,
                        help="steps for the mixed-precision arms (bf16 autocast is ~25x slower on a CPU)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "paper_table", help="the run folders")
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    parser.add_argument("overrides", nargs="*", help="training overrides for every arm, e.g. model=base")
    args = parser.parse_args(argv)
    known = {c.name: c for c in CLAIMS}
    unknown = [name for name in args.claims.split(",") if name not in known]
    if unknown:
        parser.error(f"--claims: {', '.join(unknown)} unknown; choose from {', '.join(known)}")
    args.claims = [known[name] for name in args.claims.split(",")]
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    return args


def arm_overrides(arm: Arm, seed: int, args: argparse.Namespace) -> list[str]:
    steps = args.short_steps if arm.short else args.steps
    budget = [f"trainer.max_steps={steps}", f"trainer.val_every={max(1, steps // 5)}", "trainer.ckpt_every=0"]
    if arm.short:  # a warm-up longer than the run would leave the learning rate near 0 throughout
        budget.append(f"optim.warmup_steps={max(1, steps // 5)}")
    return [*arm.overrides, *args.overrides, f"seed={seed}", *budget]  # --steps wins over trainer.max_steps


def run_arm(arm: Arm, seed: int, args: argparse.Namespace) -> Run:
    """Train one arm for one seed, or reuse the run already there with this config."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=arm_overrides(arm, seed, args))
    run_dir = args.out / arm.name / f"seed{seed}"
    existing = run_dir / "config.yaml"
    if existing.exists() and existing.read_text() != OmegaConf.to_yaml(cfg, resolve=True):
        raise ConfigError(f"{run_dir} holds a run with another config (other --steps or overrides?); "
                          f"pass another --out or delete it")
    run = read_run(run_dir) if existing.exists() else None
    if run is None or run.status != "finished":
        train(cfg, run_dir)
        run = read_run(run_dir)
    return run


def values(runs: dict[int, Run], key: str) -> list[float]:
    return [runs[seed].number(key) for seed in sorted(runs)]


def spread(xs: list[float], digits: int) -> str:
    return mean_std_text(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, digits) if xs else "—"


def claim_row(claim: Claim, results: dict[str, dict[int, Run]]) -> list[str]:
    reference, treatment = results[claim.reference.name], results[claim.treatment.name]
    comparison = Comparison(values(reference, "best_val_bits_per_event"), values(treatment, claim.treatment_metric))
    cells = [claim.name, f"“{claim.statement}”"]
    if None in comparison.reference + comparison.treatment:
        return cells + [f"`{claim.reference.name}`", f"`{claim.treatment.name}`", "—",
                        f"not measurable here: a run has no {claim.treatment_metric} (too few steps?)"]
    speed = statistics.fmean(values(treatment, "events_per_s")) / statistics.fmean(values(reference, "events_per_s"))
    device = next(iter(treatment.values())).summary.get("device", "cpu")
    stderr = f" ± {comparison.stderr:.3f}" if comparison.stderr is not None else ""
    return cells + [f"`{claim.reference.name}` {spread(comparison.reference, 3)}",
                    f"`{claim.treatment.name}` {spread(comparison.treatment, 3)}",
                    f"{comparison.mean_diff:+.3f}{stderr} ({comparison.relative:+.1%})",
                    verdict(claim, comparison, speed if claim.kind == "same_loss_faster" else None, device)]


def arm_rows(results: dict[str, dict[int, Run]], arms: dict[str, Arm]) -> list[str]:
    keys = [("best_val_bits_per_event", 3), ("best_swa_val_bits_per_event", 3), ("final_train_loss", 3),
            ("steps", 0), ("events_per_s", 0), ("wall_time_s", 0)]
    lines = ["| arm | overrides | seeds | best val bits/event | best SWA val | final train loss | steps | events/s "
             "| wall time (s) |", "|---|---|---|" + "---:|" * len(keys)]
    for name, runs in results.items():
        cells = [spread([x for x in values(runs, key) if x is not None], digits) for key, digits in keys]
        lines.append(f"| {name} | `{' '.join(arms[name].overrides)}` | {', '.join(map(str, sorted(runs)))} | "
                     + " | ".join(cells) + " |")
    return lines


def write_results(args, results, arms, minutes: float, report: Path) -> None:
    rows = [claim_row(claim, results) for claim in args.claims]
    machine = provenance.machine()
    command = "python experiments/paper_table/run.py " + shlex.join(sys.argv[1:])
    lines = [
        "# The seed's claims, measured", "",
        f"Written by `{command.strip()}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"commit `{provenance.git_commit()}`, machine: {machine['platform']}, {machine['cpus']} CPUs, "
        f"GPU: {machine['cuda'] or 'none'}; {minutes:.0f} min in all.", "",
        f"Budget: {args.steps} steps per run ({args.short_steps} for the mixed-precision arms), seeds "
        f"{', '.join(map(str, args.seeds))}; overrides for every arm: `{' '.join(args.overrides) or 'none'}` "
        f"(defaults: model=small, data=bach). Numbers are the best validation bits/event of each run (lower is "
        f"better), mean ± std over seeds (SWA: the averaged weights). Δ = treatment − reference, paired by seed, "
        f"± its standard error. A difference counts when every seed agrees on its sign and |Δ| exceeds two "
        f"standard errors; \"same loss\" means within 1% (or two standard errors).", "",
        "| claim | the seed says | reference | treatment | Δ bits/event | verdict |", "|---|---|---|---|---|---|",
        *["| " + " | ".join(cells) + " |" for cells in rows], "",
        "## Every arm", "", *arm_rows(results, arms), "",
        f"Validation curves of every run: `{report}` (python -m midiformer.report {args.out}).", "",
        (Path(__file__).resolve().parent / "NOTES.md").read_text().strip(), "",
    ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    args = parse_args(argv)
    arms = {arm.name: arm for claim in args.claims for arm in (claim.reference, claim.treatment)}
    results: dict[str, dict[int, Run]] = {name: {} for name in arms}
    started, total = time.perf_counter(), len(arms) * len(args.seeds)
    for seed in args.seeds:  # every arm once before any arm twice: a table cut short still compares
        for name, arm in arms.items():
            log.info("[%d/%d] %s, seed %d", sum(map(len, results.values())) + 1, total, name, seed)
            results[name][seed] = run_arm(arm, seed, args)
    report = make_report([args.out], args.out)
    write_results(args, results, arms, (time.perf_counter() - started) / 60, report)
    log.info("written: %s", args.results)


if __name__ == "__main__":
    exit_on_user_error(main)
