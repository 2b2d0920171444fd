"""The search: a killed study continues to exactly n_trials (the killed trial resumed from its checkpoint),
pruning, failed trials, workers, stale trials retried, its report. On a real cluster: tests/scaleout/test_slurm.py."""
from __future__ import annotations

import contextlib
import csv
import logging
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from midiformer.common import ConfigError
from midiformer.sweeps.hpo import FINISHED, INTERRUPTED, WORKER, run_worker, search
from midiformer.sweeps.report import make_report
from midiformer.sweeps.runs import read_run
from midiformer.sweeps.study import load_study, open_storage, storage_at
from midiformer.sweeps.trials import counted, retried
from tests.conftest import REPO
from tests.scaleout.conftest import signal_during_step
from tests.sweeps.conftest import TINY_SPACE, hpo_config, tiny_overrides


def hpo_command(study_dir, cache_dir, *more: str) -> list[str]:
    return [sys.executable, "-m", "midiformer.hpo", *tiny_overrides(cache_dir, *TINY_SPACE), "hpo.n_trials=4",
            "trainer.max_steps=12", "trainer.val_every=3", f"hydra.run.dir={study_dir}", *more]


def states(study_dir) -> list[TrialState]:
    return [t.state for t in load_study(storage_at(study_dir), "search").trials]


@pytest.fixture(scope="module")
def killed_and_rerun(tmp_path_factory, cache_dir):
    """A 4-trial search killed with SIGKILL once 2 trials are complete, then the same command again."""
    study_dir = tmp_path_factory.mktemp("study")
    process = subprocess.Popen(hpo_command(study_dir, cache_dir), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    study = None
    while study is None or len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.05)
        if study is None and (study_dir / "study.db").exists():
            with contextlib.suppress(ConfigError, SQLAlchemyError):  # the file is there, the study (or its tables) not yet
                study = load_study(storage_at(study_dir / "study.db"), "search")
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at, after_kill = time.time(), states(study_dir)
    rerun = subprocess.run(hpo_command(study_dir, cache_dir), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return study_dir, after_kill, killed_at, rerun.stdout + rerun.stderr


@pytest.mark.slow
def test_a_killed_search_rerun_ends_with_exactly_n_trials(killed_and_rerun):
    study_dir, after_kill, killed_at, rerun_log = killed_and_rerun
    assert 2 <= sum(s in FINISHED for s in after_kill) < 4  # the kill came before the search was done
    study = load_study(storage_at(study_dir / "study.db"), "search")
    assert len(study.trials) == 4 and all(t.state in FINISHED for t in study.trials)
    assert any(t.datetime_start.timestamp() > killed_at for t in study.trials)  # the rerun trained trials
    killed = [trial for trial, state in zip(study.trials, after_kill) if state == TrialState.RUNNING]
    for trial in killed:  # killed mid-trial: the rerun (the same worker name) took it back and resumed it
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED), trial.user_attrs
        assert f"trial {trial.number} (resumed in {trial.user_attrs['run_dir']})" in rerun_log
    assert not [t for t in study.trials if t.state == TrialState.FAIL]  # nothing counted failed for a kill
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            run = read_run(study_dir / trial.user_attrs["run_dir"])
            assert run.summary["best_val_bits_per_event"] == pytest.approx(trial.value)
            assert run.settings["model.d_model"] == trial.params["model.d_model"]


@pytest.mark.slow
def test_a_finished_search_run_again_adds_no_trial(killed_and_rerun, cache_dir):
    study_dir = killed_and_rerun[0]
    search(hpo_config(cache_dir, "hpo.n_trials=4"), study_dir)
    assert len(states(study_dir)) == 4


@pytest.mark.slow
def test_report_of_a_study(killed_and_rerun, tmp_path):
    study_dir = killed_and_rerun[0]
    make_report([study_dir / "study.db"], tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "## Study `search`" in markdown and markdown.count("| complete |") >= 2
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    complete = [t for t in load_study(storage_at(study_dir / "study.db")).trials if t.state == TrialState.COMPLETE]
    assert min(float(r["best_val_bits_per_event_mean"]) for r in rows) == pytest.approx(min(t.value for t in complete))
    for name in ("optimisation_history", "slices", "intermediate_values", "parameter_importances"):
        assert (tmp_path / f"study_{name}.png").stat().st_size > 1000, name


def enqueue(study_dir, *params: dict) -> None:
    study = optuna.create_study(study_name="search", storage=open_storage({"name": "sqlite"}, study_dir), direction="minimize")
    for values in params:
        study.enqueue_trial(values)


@pytest.mark.slow
def test_pruning_stops_a_bad_trial(cache_dir, tmp_path):
    cfg = hpo_config(cache_dir, "hpo.n_trials=2", "hpo/pruner=median", "hpo.pruner.n_startup_trials=1",
                     "trainer.max_steps=12", "trainer.val_every=3", "optim.warmup_steps=0", "hpo.space.optim.lr.low=1e-8")
    enqueue(tmp_path, {"model.d_model": 32, "optim.lr": 3e-3}, {"model.d_model": 32, "optim.lr": 1e-8})
    good, bad = search(cfg, tmp_path).trials
    assert (good.state, bad.state) == (TrialState.COMPLETE, TrialState.PRUNED)
    assert bad.intermediate_values[3] > good.intermediate_values[3]
    run = read_run(tmp_path / bad.user_attrs["run_dir"])
    assert run.status == "stopped" and run.curve()[0] == [3]  # stopped at its first validation, of 4
    assert read_run(tmp_path / good.user_attrs["run_dir"]).curve()[0] == [3, 6, 9, 12]


@pytest.mark.slow
def test_a_failed_trial_is_recorded_and_the_search_goes_on(cache_dir, tmp_path):
    cfg = hpo_config(cache_dir, "hpo.n_trials=3", "hpo/pruner=none", "hpo.space.model.d_model.choices=[32,33]",
                     "hpo.space.optim.lr.high=1e5", "optim.warmup_steps=0")
    enqueue(tmp_path, {"model.d_model": 33, "optim.lr": 1e-3},  # a bad combination: 33 is not divisible by 2 heads
            {"model.d_model": 32, "optim.lr": 1e5},             # a loss that turns NaN
            {"model.d_model": 32, "optim.lr": 1e-3})
    bad_width, nan, fine = search(cfg, tmp_path).trials
    assert [t.state for t in (bad_width, nan, fine)] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert bad_width.user_attrs["fail_reason"].startswith("ConfigError: model.d_model=33 must be divisible")
    assert nan.user_attrs["fail_reason"].startswith("TrainingError: step ")
    assert "nan" in nan.user_attrs["fail_reason"]
    report = make_report([tmp_path], tmp_path / "report")
    assert "ConfigError: model.d_model=33" in report.read_text()


def test_a_search_space_naming_no_training_option_stops_before_any_trial(cache_dir, tmp_path):
    cfg = hpo_config(cache_dir, "+hpo.space.optim.lrr={low: 1.0, high: 2.0}")
    with pytest.raises(ConfigError, match=r"^hpo.space.optim.lrr: optim.lrr is not an option"):
        search(cfg, tmp_path)
    assert not (tmp_path / "study.db").exists()


@pytest.mark.slow
def test_parallel_workers_share_one_study(cache_dir, tmp_path):
    """hpo.workers=2 on submitit's local executor (SLURM's stand-in), journal storage: 3 trials in all."""
    done = subprocess.run(hpo_command(tmp_path, cache_dir, "hpo.n_trials=3", "hpo.workers=2", "hpo.cluster=local",
                                      "hpo/storage=journal", "hpo/executor=cpu", "hpo.poll_s=1"),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    study = load_study(storage_at(tmp_path / "study.journal"))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert len(list((tmp_path / "workers").glob("*/*_log.out"))) == 2
    assert sorted(t.user_attrs["run_dir"] for t in study.trials) == ["trial_0000", "trial_0001", "trial_0002"]


@pytest.mark.slow
def test_a_trial_left_running_by_no_worker_is_marked_interrupted_and_counted(cache_dir, tmp_path):
    """A trial RUNNING with no worker name (so no heartbeat either: it never goes stale) takes one of the
    n_trials places, as a failure."""
    study = optuna.create_study(study_name="search", storage=open_storage({"name": "sqlite"}, tmp_path),
                                direction="minimize")
    study.ask()  # asked, never told: what a killed search leaves behind
    left, new = search(hpo_config(cache_dir, "hpo.n_trials=2"), tmp_path).trials
    assert (left.state, left.user_attrs["fail_reason"]) == (TrialState.FAIL, INTERRUPTED)
    assert new.state == TrialState.COMPLETE


def stop_in_the_middle(monkeypatch, study_dir, cache_dir, me: str, *more: str) -> None:
    """A worker named `me` whose process gets SIGTERM in step 5 of its first trial (a preemption): the
    trial is checkpointed and left RUNNING, the worker leaves with SystemExit."""
    signal_during_step(monkeypatch, 5, signal.SIGTERM)
    with pytest.raises(SystemExit):
        run_worker(hpo_config(cache_dir, "hpo.n_trials=2", "trainer.ckpt_every=0", *more), study_dir, me=me)
    monkeypatch.undo()
    [trial] = load_study(storage_at(study_dir / "study.db"), "search").trials
    assert trial.state == TrialState.RUNNING and trial.user_attrs[WORKER] == me


@pytest.mark.slow
def test_a_requeued_worker_takes_back_its_trial_and_resumes_it(cache_dir, tmp_path, monkeypatch, caplog):
    stop_in_the_middle(monkeypatch, tmp_path, cache_dir, "1234_0")
    with caplog.at_level(logging.INFO):
        run_worker(hpo_config(cache_dir, "hpo.n_trials=2", "trainer.ckpt_every=0"), tmp_path, me="1234_0")
    first, second = load_study(storage_at(tmp_path / "study.db"), "search").trials
    assert first.state == second.state == TrialState.COMPLETE
    assert f"resuming from {tmp_path / 'trial_0000' / 'checkpoints' / 'last.pt'} at step 5" in caplog.text
    assert read_run(tmp_path / "trial_0000").summary["steps"] == 6


@pytest.mark.slow
def test_a_trial_whose_worker_died_goes_stale_and_its_retry_resumes_it(cache_dir, tmp_path, monkeypatch, caplog):
    """Heartbeats every second, stale after 2 s: the dead worker's trial is failed and retried by another
    worker; the retry resumes in the same run folder, and the failed original does not count."""
    beats = ["hpo.storage.heartbeat_interval_s=1", "hpo.storage.grace_period_s=2"]
    stop_in_the_middle(monkeypatch, tmp_path, cache_dir, "gone_0", *beats)
    time.sleep(3)
    with caplog.at_level(logging.INFO):
        study = search(hpo_config(cache_dir, "hpo.n_trials=2", "trainer.ckpt_every=0", *beats), tmp_path)
    dead, *others = study.trials
    assert dead.state == TrialState.FAIL and retried(study.trials) == {dead.number}
    assert [t.state for t in counted(study.trials, FINISHED)] == [TrialState.COMPLETE] * 2
    [retry] = [t for t in others if t.user_attrs["run_dir"] == "trial_0000"]
    assert retry.params == dead.params and retry.user_attrs[WORKER] != "gone_0"
    assert f"resuming from {tmp_path / 'trial_0000' / 'checkpoints' / 'last.pt'} at step 5" in caplog.text


def test_the_storage_is_chosen_by_its_group(cache_dir, tmp_path):
    assert isinstance(open_storage(hpo_config(cache_dir, "hpo/storage=journal").hpo.storage, tmp_path),
                      optuna.storages.JournalStorage)
    with pytest.raises(ConfigError, match=r"^hpo.storage.url=None must be a database URL"):
        open_storage({"name": "url"}, tmp_path)
    with pytest.raises(ConfigError, match=r"^hpo/storage='redis' is unknown; choose one of: journal, sqlite, url"):
        open_storage({"name": "redis"}, tmp_path)
    with pytest.raises(ConfigError, match=r"grace_period_s=1 must be an integer above"):
        open_storage({"name": "sqlite", "heartbeat_interval_s": 1, "grace_period_s": 1}, tmp_path)


def test_worker_resources_come_from_the_executor_group(cache_dir):
    cpu = hpo_config(cache_dir, "hpo/executor=cpu").hpo.executor
    assert (cpu.gpus_per_node, cpu.cpus_per_task, cpu.mem_gb) == (0, 1, 4)
    assert 0 < cpu.slurm_signal_delay_s < cpu.timeout_min * 60 and cpu.slurm_additional_parameters.requeue
    gpu = hpo_config(cache_dir).hpo.executor
    assert gpu.gpus_per_node == 1 and gpu.slurm_max_num_timeout > 0


def _raise_bad_value() -> None:
    raise ValueError("the bad value")


def test_a_failed_worker_is_named_by_its_exception_line(tmp_path):
    """submitit wraps a job's traceback and then names its log paths: the error names the exception."""
    import submitit

    from midiformer.sweeps.hpo import remote_error

    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="local")
    executor.update_parameters(timeout_min=1)
    job = executor.submit(_raise_bad_value)
    with pytest.raises(Exception) as raised:
        job.result()
    assert remote_error(raised.value) == "ValueError: the bad value"
