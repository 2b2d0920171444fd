"""make paper-table, at its smallest: 2 claims x 1 seed x 10 steps on the tiny model, end to end."""
from __future__ import annotations

import pytest

from midiformer.sweeps.runs import read_run
from tests.sweeps.conftest import run_module, tiny_overrides

RUN_PY = "experiments/paper_table/run.py"


@pytest.fixture(scope="module")
def table(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("paper_table")
    command = [RUN_PY, "--claims", "scalenorm,mixed_precision", "--seeds", "0", "--steps", "10", "--short-steps", "6",
               "--out", str(out / "runs"), "--results", str(out / "RESULTS.md"), *tiny_overrides(cache_dir)]
    done = run_module(*command)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, command


def test_results_have_a_row_and_an_honest_verdict_per_claim(table):
    out, _ = table
    results = (out / "RESULTS.md").read_text()
    claims_table = results.split("| claim | the seed says |")[1].split("\n\n")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in claims_table.splitlines()[2:]}
    assert sorted(rows) == ["mixed_precision", "scalenorm"]
    assert "nothing claimed to check; here: one seed, no spread to judge by" in rows["scalenorm"]
    assert "“the one with mixed precision was three times faster without affecting the loss”" in rows["mixed_precision"]
    assert "3x faster: not measurable here (needs a GPU" in rows["mixed_precision"]
    assert "same loss: confirmed" in rows["mixed_precision"]  # bf16 autocast on 6 steps: the same loss within 1%
    baseline = read_run(out / "runs" / "baseline" / "seed0")
    assert f"`baseline` {baseline.summary['best_val_bits_per_event']:.3f}" in rows["scalenorm"]
    for arm, steps in (("baseline", 10), ("scalenorm", 10), ("fp32_short", 6), ("mixed_precision", 6)):
        run = read_run(out / "runs" / arm / "seed0")
        assert (run.status, run.summary["steps"]) == ("finished", steps)
    assert read_run(out / "runs" / "mixed_precision" / "seed0").settings["trainer.precision.name"] == "bf16-mixed"
    assert (out / "runs" / "report.md").exists()


def test_a_rerun_reuses_finished_runs(table):
    out, command = table
    before = {p: p.stat().st_mtime for p in (out / "runs").glob("*/seed0/summary.json")}
    done = run_module(*command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p: p.stat().st_mtime for p in before} == before


def test_an_unknown_claim_is_a_one_line_error(tmp_path):
    done = run_module(RUN_PY, "--claims", "scalenorm,quantum", "--out", str(tmp_path))
    assert done.returncode == 2 and "--claims: quantum unknown" in done.stderr
