"""The report's PNGs: validation curves of run folders, and Optuna's own plots of a study."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from midiformer.sweeps.runs import Run

log = logging.getLogger("midiformer.report")

CURVE = "val/bits_per_event"
KEY_LABELS = {CURVE: "validation", "val/swa/bits_per_event": "validation, averaged weights (SWA)",
              "train/bits_per_event": "training"}


def _common_steps(runs: list[Run], key: str = CURVE) -> list[int]:
    steps = [set(run.curve(key)[0]) for run in runs]
    return sorted(set.intersection(*steps)) if steps else []


def _values_at(run: Run, steps: list[int], key: str = CURVE) -> list[float]:
    curve = dict(zip(*run.curve(key)))
    return [curve[s] for s in steps]


def curves_png(runs: list[Run], title: str, path: Path) -> Path:
    """One configuration: a line per seed and, with several seeds, their spread (min to max) shaded."""
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    axes = figure.add_subplot()
    for run in runs:
        steps, values = run.curve(CURVE)
        axes.plot(steps, values, marker=".", linewidth=1.2, label=f"seed {run.seed}")
    steps = _common_steps(runs)
    if len(runs) > 1 and steps:
        values = np.array([_values_at(run, steps) for run in runs])
        axes.fill_between(steps, values.min(axis=0), values.max(axis=0), alpha=0.2, label="spread over seeds")
    return _save(figure, axes, path, title, "validation bits/event", legend_size=8, title_size=9)


def overview_png(groups: list[tuple[str, list[Run]]], path: Path) -> Path:
    """Every configuration: the mean over seeds, mean +- std shaded."""
    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for label, runs in groups:
        steps = _common_steps(runs)
        if not steps:
            continue
        values = np.array([_values_at(run, steps) for run in runs])
        mean, std = values.mean(axis=0), values.std(axis=0, ddof=1) if len(runs) > 1 else 0 * values[0]
        axes.plot(steps, mean, linewidth=1.4, label=label[:60])
        axes.fill_between(steps, mean - std, mean + std, alpha=0.15)
    return _save(figure, axes, path, "validation bits/event, mean over seeds (± std)", "bits/event", legend_size=7)


def arms_png(arms: list[tuple[str, list[Run]]], title: str, path: Path,
             keys: tuple[str, ...] = (CURVE,)) -> Path:
    """One claim: a line per arm (and metric key), the mean over its seeds, their min-max spread shaded."""
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    axes = figure.add_subplot()
    for index, (label, runs) in enumerate(arms):
        for key, style in zip(keys, ("-", "--", ":")):  # one colour per arm, one line style per metric
            steps = _common_steps(runs, key)
            if not steps:
                continue
            values = np.array([_values_at(run, steps, key) for run in runs])
            name = label if len(keys) == 1 else f"{label}, {KEY_LABELS.get(key, key)}"
            colour = f"C{index % 10}"
            axes.plot(steps, values.mean(axis=0), style, color=colour, marker=".", linewidth=1.4,
                      label=f"{name} ({len(runs)} seeds)")
            if len(runs) > 1:
                axes.fill_between(steps, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.15)
    return _save(figure, axes, path, title, "bits/event", legend_size=7, title_size=9)


def _save(figure: Figure, axes, path: Path, title: str, ylabel: str, legend_size: int,
          title_size: int | None = None) -> Path:
    """The finish every curve figure shares: labels, grid, legend, written at 110 dpi."""
    axes.set(title=title, xlabel="step", ylabel=ylabel)
    if title_size is not None:
        axes.title.set_fontsize(title_size)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=legend_size)
    figure.savefig(path, dpi=110)
    return path


def study_pngs(study, out: Path) -> list[tuple[str, Path]]:
    """Optuna's matplotlib plots of the study; one that cannot be drawn yet (too few trials) is skipped."""
    import matplotlib.pyplot as plt
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as optuna_plots

    plots = {
        "optimisation history": lambda: optuna_plots.plot_optimization_history(study),
        # PED-ANOVA needs no scikit-learn (the default fANOVA does)
        "parameter importances": lambda: optuna_plots.plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator()),
        "slices": lambda: optuna_plots.plot_slice(study),
        "intermediate values (what the pruner saw)": lambda: optuna_plots.plot_intermediate_values(study),
    }
    written = []
    for title, plot in plots.items():
        path = out / f"study_{title.split(' (')[0].replace(' ', '_')}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = plot()
        except (ValueError, RuntimeError, AssertionError, ZeroDivisionError) as error:
            log.warning("no %s plot: %s", title, str(error).splitlines()[0] if str(error) else type(error).__name__)
            continue
        figure = np.atleast_1d(axes).flat[0].figure
        figure.set_size_inches(max(figure.get_size_inches()[0], 6.4), 4.5)
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append((title, path))
    return written
