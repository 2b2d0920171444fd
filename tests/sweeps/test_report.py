"""A tiny ablation as a Hydra multirun, then its report: groups over seeds, mean ± std, CSV, PNGs."""
from __future__ import annotations

import csv
import shutil
import statistics

import pytest
import yaml

from midiformer.sweeps.report import make_report
from midiformer.sweeps.runs import find_runs, read_run
from tests.sweeps.conftest import run_module, tiny_overrides

pytestmark = pytest.mark.slow  # a --multirun and the report in subprocesses

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def multirun(tmp_path_factory, cache_dir):
    """python -m midiformer.train --multirun model/norm=layernorm,scalenorm seed=0,1 with the basic launcher."""
    sweep_dir = tmp_path_factory.mktemp("multirun")
    done = run_module("-m", "midiformer.train", "--multirun", *tiny_overrides(cache_dir),
                      "model/norm=layernorm,scalenorm", "seed=0,1", f"hydra.sweep.dir={sweep_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep_dir


def test_multirun_jobs_are_run_folders_with_their_overrides(multirun):
    folders = find_runs(multirun)
    assert [f.name for f in folders] == ["0", "1", "2", "3"]
    recorded = [yaml.safe_load((f / ".hydra" / "overrides.yaml").read_text()) for f in folders]
    assert {(o[-2], o[-1]) for o in recorded} == {(f"model/norm={n}", f"seed={s}")
                                                  for n in ("layernorm", "scalenorm") for s in (0, 1)}
    for folder in folders:
        assert read_run(folder).status == "finished"


def test_report_groups_seeds_into_configurations_with_mean_and_std(multirun, tmp_path):
    done = run_module("-m", "midiformer.report", str(multirun), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert sorted(r["configuration"] for r in rows) == ["model/norm=layernorm", "model/norm=scalenorm"]
    runs = [read_run(f) for f in find_runs(multirun)]
    for row in rows:
        norm = row["configuration"].split("=")[1]
        best = [r.summary["best_val_bits_per_event"] for r in runs if r.settings["model.norm.name"] == norm]
        assert (row["runs"], row["seeds"]) == ("2", "0 1")
        assert float(row["best_val_bits_per_event_mean"]) == pytest.approx(statistics.fmean(best))
        assert float(row["best_val_bits_per_event_std"]) == pytest.approx(statistics.stdev(best))
        assert float(row["steps_mean"]) == 6 and float(row["events_per_s_mean"]) > 0
    means = [float(r["best_val_bits_per_event_mean"]) for r in rows]
    assert means == sorted(means) and [r["rank"] for r in rows] == ["1", "2"]
    markdown = (tmp_path / "report.md").read_text()
    assert "`model/norm=layernorm`" in markdown and " ± " in markdown
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) == 3 and "curves_all.png" in pngs  # the overview and one per configuration
    for png in pngs:
        assert (tmp_path / png).read_bytes().startswith(PNG_MAGIC)
        assert f"]({png})" in markdown


def test_report_of_run_folders_without_hydra_labels_by_config(multirun, tmp_path):
    """Run folders launched without Hydra have no overrides.yaml: the labels come from config.yaml."""
    for job in ("0", "3"):
        shutil.copytree(multirun / job, tmp_path / f"run{job}", ignore=shutil.ignore_patterns(".hydra"))
    report = make_report([tmp_path / "run0", tmp_path / "run3"], tmp_path / "out")
    rows = list(csv.DictReader(open(report.with_suffix(".csv"))))
    assert sorted(r["configuration"] for r in rows) == ["model.norm=layernorm", "model.norm=scalenorm"]
    assert all(r["best_val_bits_per_event_std"] == "" for r in rows)  # one seed each: no spread


def test_report_of_nothing_is_a_one_line_error(tmp_path):
    done = run_module("-m", "midiformer.report", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no run folders" in done.stderr
