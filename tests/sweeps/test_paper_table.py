"""make paper-table, at its smallest: a few claims x 2 seeds x a few steps on the tiny model, end to end."""
from __future__ import annotations

import importlib
import json
import re
import statistics
import sys

import pytest
from matplotlib.image import imread

from midiformer.sweeps.runs import read_run
from tests.conftest import REPO
from tests.sweeps.conftest import run_module, tiny_overrides

RUN_PY = "experiments/paper_table/run.py"


def paper_table():
    """run.py as a module (a script that imports its sibling claims.py by name, as the benchmarks do)."""
    folder = str(REPO / "experiments" / "paper_table")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("run")
CLAIMS = ("scalenorm", "mixed_precision", "swa", "tfixup", "augmentation")


@pytest.fixture(scope="module")
def table(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("paper_table")
    command = [RUN_PY, "--claims", ",".join(CLAIMS), "--seeds", "0,1", "--steps", "8", "--short-steps", "4",
               "--subset", "0.3", "--depth", "3", "--width", "16",
               "--out", str(out / "runs"), "--results", str(out / "RESULTS.md"), *tiny_overrides(cache_dir)]
    done = run_module(*command, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, command


def claim_rows(results: str) -> dict[str, list[str]]:
    claims_table = results.split("| claim | the seed says |")[1].split("\n\n")[0]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split(" | ")]
                                          for line in claims_table.splitlines()[2:])}


@pytest.mark.slow
def test_every_claim_has_a_row_a_regime_a_verdict_and_a_curve(table):
    out, _ = table
    results = (out / "RESULTS.md").read_text()
    rows = claim_rows(results)
    assert sorted(rows) == sorted(CLAIMS)
    for name, cells in rows.items():
        assert len(cells) == 9, cells
        assert cells[7] == f"[curve]({name}.png)"  # relative: beside RESULTS.md
        assert cells[8], f"{name}: no line on what would change at scale"
        png = imread(out / f"{name}.png")
        assert png.shape[0] > 100 and png.std() > 0  # a drawn figure, not a blank canvas
    assert "a 30% training subset, no dropout, 16 steps" in rows["augmentation"][2]
    assert "3 blocks of width 16, 2 heads, 8 steps" in rows["tfixup"][2] and "4 steps" in rows["mixed_precision"][2]
    assert "nothing claimed to check; here:" in rows["scalenorm"][6]
    assert "“the one with mixed precision was three times faster without affecting the loss”" in rows["mixed_precision"][1]
    assert "3x faster: not measurable here (needs a GPU" in rows["mixed_precision"][6]
    assert "val - train gap: baseline" in rows["augmentation"][6]
    assert "`swa` final weights" in rows["swa"][3] and "`swa` averaged" in rows["swa"][4]


@pytest.mark.slow
def test_a_claim_with_no_clear_difference_gets_a_third_seed(table):
    out, _ = table
    ALL_CLAIMS, claim_arms = paper_table().CLAIMS, paper_table().claim_arms

    rows = claim_rows((out / "RESULTS.md").read_text())
    claims = {claim.name: claim for claim in ALL_CLAIMS}
    for name, cells in rows.items():
        unclear = "no clear difference" in cells[6] or "same loss: confirmed" in cells[6]
        for arm in claim_arms(claims[name]):
            third = out / "runs" / claims[name].regime.name / arm.name / "seed2"
            if unclear:
                assert read_run(third).status == "finished", f"{name}: no third seed for {arm.name}"


def test_unclear_claims_are_those_within_the_noise_of_their_seeds():
    ALL_CLAIMS, unclear_claims = paper_table().CLAIMS, paper_table().unclear_claims

    class Figures:  # what a Run gives the table: one number per key
        def __init__(self, value):
            self.value = value

        def number(self, key):
            return self.value

    scalenorm = next(c for c in ALL_CLAIMS if c.name == "scalenorm")
    def results(reference, treatment):
        return {(scalenorm.regime.name, scalenorm.reference.name): dict(enumerate(map(Figures, reference))),
                (scalenorm.regime.name, scalenorm.treatment.name): dict(enumerate(map(Figures, treatment)))}
    assert unclear_claims([scalenorm], results([4.0, 4.2], [3.98, 4.21])) == [scalenorm]  # signs disagree
    assert unclear_claims([scalenorm], results([4.0, 4.2], [3.5, 3.71])) == []            # every seed better
    assert unclear_claims([scalenorm], results([4.0], [3.5])) == []  # one seed: no spread to judge by


@pytest.mark.slow
def test_results_name_no_absolute_path(table):
    out, _ = table
    results = (out / "RESULTS.md").read_text()
    assert str(REPO) not in results
    assert not re.search(r"(?<![\w.])/(tmp|work|home)/", results)  # ../../tmp/... is relative; /tmp/... is not


@pytest.mark.slow
def test_each_regime_trains_what_it_says(table):
    out, _ = table
    runs = out / "runs"
    seeds = sorted((runs / "default" / "baseline").glob("seed*"))  # seed 2 too when a claim was unclear
    assert len(seeds) >= 2
    baseline = statistics.fmean(read_run(seed).summary["best_val_bits_per_event"] for seed in seeds)
    assert f"`baseline` {baseline:.3f} ± " in claim_rows(
        (out / "RESULTS.md").read_text())["scalenorm"][3]
    trained = sum(json.loads(p.read_text())["wall_time_s"] for p in runs.glob("*/*/seed*/summary.json")) / 60
    assert f"the runs of the table trained for {trained:.0f} min in all" in (out / "RESULTS.md").read_text()
    for regime, arm, steps in (("default", "baseline", 8), ("default", "scalenorm", 8), ("short", "fp32_short", 4),
                               ("short", "mixed_precision", 4), ("swa_phase", "swa", 16), ("deep", "tfixup", 8),
                               ("deep", "baseline_no_warmup", 8), ("overfit", "augmentation", 16)):
        run = read_run(runs / regime / arm / "seed1")
        assert (run.status, run.summary["steps"]) == ("finished", steps), (regime, arm)
    deep = read_run(runs / "deep" / "tfixup" / "seed0").settings
    assert (deep["model.n_layer"], deep["model.d_model"], deep["model.init.name"]) == (3, 16, "tfixup")
    assert read_run(runs / "deep" / "baseline_no_warmup" / "seed0").settings["optim.warmup_steps"] == 0
    overfit = read_run(runs / "overfit" / "baseline" / "seed0").settings
    splits = {k: overfit[f"data.splits.{k}"] for k in ("train", "unused", "val", "test")}
    assert splits == {"train": 0.3, "unused": 0.6, "val": 0.05, "test": 0.05} and overfit["model.dropout"] == 0.0
    assert read_run(runs / "overfit" / "augmentation" / "seed0").settings["data.augment.name"] == "all"
    swa = read_run(runs / "swa_phase" / "swa" / "seed0")
    assert swa.settings["optim.swa.start_step"] == 0.5 and swa.summary["final_swa_val_bits_per_event"] is not None
    assert read_run(runs / "short" / "mixed_precision" / "seed0").settings["trainer.precision.name"] == "bf16-mixed"
    assert (runs / "report.md").exists()


@pytest.mark.slow
def test_a_rerun_reuses_finished_runs(table):
    out, command = table
    before = {p: p.stat().st_mtime for p in (out / "runs").glob("*/*/seed*/summary.json")}
    # arms: default 2, short 2, swa_phase 1, deep 3, overfit 2; a third seed only for the unclear claims
    assert len([p for p in before if p.parent.name in ("seed0", "seed1")]) == 2 * 10
    done = run_module(*command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p: p.stat().st_mtime for p in before} == before


def test_an_unknown_claim_is_a_one_line_error(tmp_path):
    done = run_module(RUN_PY, "--claims", "scalenorm,quantum", "--out", str(tmp_path))
    assert done.returncode == 2 and "--claims: quantum unknown" in done.stderr


def test_a_subset_outside_a_training_share_is_a_one_line_error(tmp_path):
    done = run_module(RUN_PY, "--subset", "0.97", "--out", str(tmp_path))
    assert done.returncode == 2 and "--subset: 0.97 is not a training share" in done.stderr


@pytest.mark.slow
def test_the_claim_about_samples_compares_continuations_with_the_real_ones(tmp_path, cache_dir):
    """--claims continuation: the baseline runs continue held-out primers; the section gives the real
    continuation, the trained and the untrained model per metric, a distance, and a verdict."""
    out = tmp_path
    command = [RUN_PY, "--claims", "continuation", "--seeds", "0,1", "--steps", "8", "--primer-seconds", "0.5",
               "--continue-seconds", "2", "--out", str(out / "runs"),
               "--results", str(out / "RESULTS.md"), *tiny_overrides(cache_dir),
               "data.splits={train: 0.7, val: 0.1, test: 0.2}"]
    done = run_module(*command, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = (out / "RESULTS.md").read_text()
    section = results.split("## continuation: “the transformer can reliably produce chords and learn the timing")[1]
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines() if line.startswith("| ")}
    assert {"chord_rate", "onset_grid_distance_to_primer"} <= set(rows)
    assert re.search(r"\*\*Verdict:\*\* (confirmed|not confirmed)", section), section[:2000]
    for seed in (0, 1):
        summary = out / "runs" / "default" / "baseline" / f"seed{seed}" / "continuations" / "summary.json"
        table = __import__("json").loads(summary.read_text())["table"]
        assert {"real", "model", "untrained"} <= set(table["chord_rate"])
        assert table["chord_rate"]["model"]["n"] >= 2  # primers x samples
    before = summary.stat().st_mtime
    assert run_module(*command, timeout=600).returncode == 0
    assert summary.stat().st_mtime == before  # reused, not generated again


def test_a_continuation_metric_undefined_for_a_seed_is_compared_over_the_others(tmp_path):
    """An untrained model that plays no note has no chord rate: that seed is left out of the metric's
    comparison, and the section says so, instead of the whole table failing."""
    module = paper_table()

    def summary(untrained_chords):
        cell = lambda mean: {"mean": mean, "std": 0.0, "n": 4}  # noqa: E731
        chord = {"real": cell(0.9), "model": cell(0.8), **({"untrained": cell(untrained_chords)}
                                                           if untrained_chords is not None else {})}
        grid = {"real": cell(0.2), "model": cell(0.4), "untrained": cell(0.9)}
        return {"primers": 3, "table": {"chord_rate": chord, "onset_grid_distance_to_primer": grid}}

    class Finished:  # a run whose continuations are already written
        def __init__(self, seed, untrained_chords):
            self.path = tmp_path / f"seed{seed}"
            (self.path / "continuations").mkdir(parents=True)
            (self.path / "continuations" / "summary.json").write_text(json.dumps(summary(untrained_chords)))

    runs = {0: Finished(0, 0.0), 1: Finished(1, 0.1), 2: Finished(2, None)}
    args = module.parse_args(["--out", str(tmp_path)])
    section = "\n".join(module.continuation_section(module.CONTINUATION, runs, args))
    assert "chord_rate is undefined for seed 2" in section
    chord_row = next(line for line in section.splitlines() if line.startswith("| chord_rate |"))
    assert "0.050 ± 0.071" in chord_row  # the untrained column over seeds 0 and 1 only
    assert "**Verdict:**" in section
