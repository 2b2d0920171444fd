"""python -m midiformer.report PATH [PATH ...] — one table and a few plots from run folders or a study.

    python -m midiformer.report multirun/2026-11-25/10-00-00     # a multirun: one row per configuration
    python -m midiformer.report outputs/a outputs/b              # some run folders
    python -m midiformer.report outputs/hpo/search               # an Optuna study (its folder or study.db)

Runs that differ only in their seed are one configuration: its row gives mean ± std over the seeds
of best validation bits/event, final training loss, steps, events/s and wall time, labelled by the
overrides that set it apart (the Hydra command line, or else the config keys that differ), best
first. Writes report.md, report.csv and PNGs (validation curves per configuration, a line per seed;
for a study also Optuna's optimisation history, parameter importances, slices and intermediate values)
into --out, by default the first PATH (or the folder of a study file). Needs no W&B.
"""
from __future__ import annotations

import argparse
import csv
import logging
import re
import statistics
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midiformer.common import ConfigError
from midiformer.sweeps import plots
from midiformer.sweeps.runs import SUMMARY_KEYS, Run, find_runs, read_run
from midiformer.sweeps.study import load_study, storage_at

log = logging.getLogger("midiformer.report")

TITLES = {"best_val_bits_per_event": "best val bits/event", "final_train_loss": "final train loss",
          "steps": "steps", "events_per_s": "events/s", "wall_time_s": "wall time (s)"}
DIGITS = {"best_val_bits_per_event": 4, "final_train_loss": 4, "steps": 0, "events_per_s": 0, "wall_time_s": 1}
IGNORED = {"seed"}  # what varies between the runs of one configuration


@dataclass
class Group:
    label: str        # what sets this configuration apart from the others
    runs: list[Run]   # one per seed

    def stats(self, key: str) -> tuple[float | None, float | None]:
        """Mean and sample standard deviation over the runs (std None with fewer than two values)."""
        values = [v for v in (run.number(key) for run in self.runs) if v is not None]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None

    @property
    def seeds(self) -> list:
        return sorted(run.seed for run in self.runs)


# --- grouping -------------------------------------------------------------------------------------

def varying_keys(runs: list[Run]) -> list[str]:
    keys = sorted({key for run in runs for key in run.settings} - IGNORED)
    return [k for k in keys if len({repr(run.settings.get(k, "—")) for run in runs}) > 1]


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def settings_label(run: Run, keys: list[str]) -> str:
    """`model.norm=scalenorm optim.lr=0.001`: a varying `X.name` stands for its whole node X."""
    named = {k[: -len(".name")] for k in keys if k.endswith(".name")}
    shown = [k for k in keys if not any(k.startswith(node + ".") and k != node + ".name" for node in named)]
    return " ".join(f"{k.removesuffix('.name') if k.endswith('.name') else k}={_show(run.settings.get(k, '—'))}"
                    for k in shown)


def override_labels(groups: list[list[Run]]) -> list[str] | None:
    """Each group's Hydra overrides less the seed and those every run shares; None if a run has none."""
    if any(run.overrides is None for runs in groups for run in runs):
        return None
    common = set.intersection(*(set(run.overrides) for runs in groups for run in runs))
    return [" ".join(o for o in runs[0].overrides if o not in common and not o.startswith("seed=")) for runs in groups]


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs whose configs differ only in IGNORED keys form one Group; best (lowest bits/event) first."""
    keys = varying_keys(runs)
    by_config: dict[tuple, list[Run]] = {}
    for run in runs:
        by_config.setdefault(tuple(repr(run.settings.get(k, "—")) for k in keys), []).append(run)
    members = [sorted(group, key=lambda r: r.seed) for group in by_config.values()]
    labels = override_labels(members)
    if labels is None or len(set(labels)) < len(labels):  # no command lines, or they do not tell configs apart
        labels = [settings_label(group[0], keys) for group in members]
    groups = [Group(label or "(one configuration)", group) for label, group in zip(labels, members)]
    return sorted(groups, key=lambda g: (g.stats("best_val_bits_per_event")[0] is None,
                                         g.stats("best_val_bits_per_event")[0] or 0.0))


# --- writing --------------------------------------------------------------------------------------

def mean_std_text(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "—"
    return f"{mean:,.{digits}f}" + (f" ± {std:,.{digits}f}" if std is not None else "")


def write_csv(groups: list[Group], path: Path) -> Path:
    columns = ["rank", "configuration", "runs", "seeds"] + [f"{k}_{s}" for k in SUMMARY_KEYS for s in ("mean", "std")]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for rank, group in enumerate(groups, 1):
            row = {"rank": rank, "configuration": group.label, "runs": len(group.runs),
                   "seeds": " ".join(map(str, group.seeds))}
            for key in SUMMARY_KEYS:
                mean, std = group.stats(key)
                row[f"{key}_mean"], row[f"{key}_std"] = ("" if mean is None else mean), ("" if std is None else std)
            writer.writerow(row)
    return path


def markdown_table(groups: list[Group]) -> list[str]:
    lines = ["| # | configuration | seeds | " + " | ".join(TITLES[k] for k in SUMMARY_KEYS) + " |",
             "|---|---|---|" + "---:|" * len(SUMMARY_KEYS)]
    for rank, group in enumerate(groups, 1):
        cells = [mean_std_text(*group.stats(k), DIGITS[k]) for k in SUMMARY_KEYS]
        lines.append(f"| {rank} | `{group.label}` | {', '.join(map(str, group.seeds))} | " + " | ".join(cells) + " |")
    return lines


def trials_table(study) -> list[str]:
    lines = ["| trial | state | value | parameters | reason |", "|---:|---|---:|---|---|"]
    for trial in study.trials:
        params = " ".join(f"{k}={_show(v)}" for k, v in trial.params.items())
        value = f"{trial.value:.4f}" if trial.value is not None else "—"
        reason = trial.user_attrs.get("fail_reason", "")
        lines.append(f"| {trial.number} | {trial.state.name.lower()} | {value} | `{params}` | {reason} |")
    return lines


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)[:80].strip("_") or "run"


def make_report(paths: list[str | Path], out: str | Path | None = None, study_name: str | None = None) -> Path:
    """Read `paths`, write report.md, report.csv and the PNGs into `out`; returns report.md's path."""
    study, roots = None, []
    for path in paths:
        storage = storage_at(path)
        if storage is not None:
            study = load_study(storage, study_name)
        if "://" not in str(path):
            roots.append(Path(path) if Path(path).is_dir() else Path(path).parent)
    missing = [str(p) for p in paths if "://" not in str(p) and not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: no such file or folder")
    runs = [read_run(folder) for root in roots for folder in find_runs(root)]
    if not runs and study is None:
        raise FileNotFoundError(f"{', '.join(map(str, paths))}: no run folders (config.yaml + metrics.jsonl) "
                                f"and no Optuna study found")
    out = Path(out) if out else roots[0] if roots else Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs) if runs else []

    lines = ["# Report", "", f"Sources: {', '.join(f'`{p}`' for p in paths)}; {len(runs)} runs, "
             f"{len(groups)} configurations. Mean ± std over seeds; lower bits/event is better.", ""]
    lines += markdown_table(groups) + [""]
    if groups:
        overview = plots.overview_png([(g.label, g.runs) for g in groups], out / "curves_all.png")
        lines += ["## Validation curves", "", f"![every configuration]({overview.name})", ""]
        for rank, group in enumerate(groups, 1):
            png = plots.curves_png(group.runs, group.label, out / f"curves_{rank:02d}_{_slug(group.label)}.png")
            folders = ", ".join(f"`{_relative(run.path, out)}`" for run in group.runs)
            lines += [f"### {rank}. `{group.label}`", "", f"Runs: {folders}", "", f"![{group.label}]({png.name})", ""]
    if study is not None:
        lines += [f"## Study `{study.study_name}`", ""] + trials_table(study) + [""]
        lines += [f"### {title}\n\n![{title}]({png.name})\n" for title, png in plots.study_pngs(study, out)]
    write_csv(groups, out / "report.csv")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve())) or "."
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m midiformer.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a multirun folder, run folders, or an Optuna study (folder, study.db, study.journal, URL)")
    parser.add_argument("--out", help="where report.md, report.csv and the PNGs go (default: the first PATH)")
    parser.add_argument("--study", help="the study's name, when the storage holds several")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its notes on categorical axes
    warnings.filterwarnings("ignore", module="optuna")  # experimental-feature notices, singular slice limits
    try:
        report = make_report(args.paths, args.out, args.study)
    except (ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"written: {report} and {report.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
