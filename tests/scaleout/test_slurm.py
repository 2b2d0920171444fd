"""On a real SLURM cluster (../shared/tools/slurm/start: two nodes n1, n2 of partition debug, no GPUs):
hydra/launcher=slurm_cpu trains like one process, a SIGUSR2 requeue and a 1-minute time limit resume,
and a search with workers that are requeued mid-trial ends with exactly n_trials, none failed for it.

Skipped where sinfo is absent; .ci/run starts the cluster and sets MIDIFORMER_REQUIRE_SLURM=1, so
there a cluster that did not start fails these tests."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from midiformer.sweeps.study import load_study, storage_at
from midiformer.sweeps.trials import counted, retried
from midiformer.train.metrics import read_metrics
from tests.conftest import REPO
from tests.scaleout.conftest import (
    ENV,
    ReleaseRequeued,
    job_ids,
    losses,
    run,
    sacct_states,
    slurm_cluster,  # noqa: F401 - a fixture
    slurm_train_command,
    weights,
)
from tests.scaleout.test_world_sizes import assert_same_training
from tests.sweeps.conftest import TINY_SPACE, tiny_overrides

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def wait_until(condition, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"the command ended before {what}: {process.stderr.read()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def reached_step(run_dir: Path, step: int) -> bool:
    return (run_dir / "metrics.jsonl").exists() and any(m["step"] >= step for m in read_metrics(run_dir))


@pytest.fixture(scope="module")
def two_nodes(slurm_cluster, tmp_path_factory, cache_dir):  # noqa: F811
    """MULTI as one job of 2 nodes x 1 task (a 2-rank gloo group over n1 and n2)."""
    sweep = tmp_path_factory.mktemp("two_nodes")
    result = run(slurm_train_command(sweep, cache_dir, "hydra.launcher.nodes=2"), timeout=600)
    return sweep, result


def test_two_nodes_one_task_each_train_like_one_process(two_nodes, one_process):
    sweep, result = two_nodes
    run_dir = sweep / "0"
    assert_same_training(run_dir, one_process)
    assert json.loads((run_dir / "summary.json").read_text())["world_size"] == 2
    [job] = job_ids(sweep)
    assert "n[1-2]" in subprocess.run(["sacct", "-X", "-n", "-j", job, "-o", "NodeList"], capture_output=True,
                                      text=True).stdout
    # rank 1 wrote nothing into the run folder; its log is submitit's file of task 1
    [log] = run_dir.glob("*.log")  # Hydra's job log: rank 0's lines only (each task logs its own end once)
    assert log.read_text().count("Job completed successfully") == 1
    assert "#0 (job " in result.stderr + result.stdout and "returned " in result.stderr + result.stdout
    rank1 = (sweep / ".submitit" / job / f"{job}_1_log.out").read_text()
    assert "global_rank=1(2)" in rank1
    assert "Job completed successfully" in rank1


def test_sigusr2_requeues_the_job_and_it_resumes_bitwise(slurm_cluster, two_nodes, tmp_path, cache_dir):  # noqa: F811
    """scancel --signal=USR2 (what a preemption with send_user_signal, or the time-limit warning, sends):
    rank 0 checkpoints, submitit requeues the job, the requeued job resumes to the uninterrupted weights."""
    process = subprocess.Popen(slurm_train_command(tmp_path, cache_dir, "hydra.launcher.nodes=2"), cwd=REPO,
                               env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "0"
    with ReleaseRequeued() as release:
        wait_until(lambda: reached_step(run_dir, 2), process, 300, "step 2")
        [job] = job_ids(tmp_path)
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        _, stderr = process.communicate(timeout=400)
    assert process.returncode == 0, stderr[-3000:]
    assert job in release.released, "the job was never requeued"
    assert "REQUEUED" in sacct_states(job) or len(sacct_states(job)) >= 2
    rank0 = (tmp_path / ".submitit" / job / f"{job}_0_log.out").read_text()
    stopped_at = int(rank0.split("stopped by signal SIGUSR2 at step ")[1].split(";")[0])
    assert 2 <= stopped_at < 30
    assert f"resuming from {run_dir / 'checkpoints' / 'last.pt'} at step {stopped_at}" in rank0
    reference = two_nodes[0] / "0"
    a, b = weights(reference), weights(run_dir)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert losses(run_dir) == losses(reference)


def test_a_one_minute_time_limit_requeues_and_the_run_finishes(slurm_cluster, tmp_path, cache_dir):  # noqa: F811
    """timeout_min=1, signal_delay_s=15: SIGUSR2 15-45 s into each allocation (SLURM sends it up to 60 s
    early, by its timer's resolution); a run of a few allocations of steps goes through requeues (each a
    time-out for submitit) and finishes where it should. 2000 steps: on a quiet machine 1000 steps of this
    model (about 30 s) could end inside the first allocation, before any signal."""
    steps = 2000
    command = slurm_train_command(tmp_path, cache_dir, "hydra.launcher.timeout_min=1",
                                  "hydra.launcher.signal_delay_s=15", f"trainer.max_steps={steps}",
                                  "trainer.val_every=500", "trainer.ckpt_every=500", "trainer.log_every=100")
    with ReleaseRequeued() as release:
        result = run(command, timeout=1500)
    [job] = job_ids(tmp_path)
    rank0 = (tmp_path / ".submitit" / job / f"{job}_0_log.out").read_text()
    assert "this job is timed-out" in rank0 and "Requeued job" in rank0, result.stderr[-2000:]
    assert job in release.released
    assert "resuming from" in rank0
    summary = json.loads((tmp_path / "0" / "summary.json").read_text())
    assert (summary["status"], summary["steps"]) == ("finished", steps)


def worker_tracebacks(study_dir: Path) -> str:
    """The end of every worker log that holds a traceback: what a failed search test shows."""
    logs = [p.read_text() for p in (study_dir / "workers").glob("*/*_log.err")]
    return "\n".join(text[text.index("Traceback"):][-2000:] for text in logs if "Traceback" in text)


def test_a_search_whose_workers_are_requeued_mid_trial_ends_with_exactly_n_trials(slurm_cluster, tmp_path,  # noqa: F811
                                                                                    cache_dir):
    """2 workers (a job array) with a 2-minute time limit (SIGUSR2 60-90 s into each allocation), and
    worker 0 also requeued by `scontrol requeue` (SIGTERM, what a REQUEUE preemption does) in its first
    trial. The stopped trials resume from their checkpoints in their own folders; the study
    ends with exactly 4 finished trials and none failed."""
    n_trials = 4
    command = [sys.executable, "-m", "midiformer.hpo", *tiny_overrides(cache_dir, *TINY_SPACE),
               f"hpo.n_trials={n_trials}", "hpo.workers=2", "hpo.cluster=slurm", "hpo/executor=cpu",
               f"hpo.executor.slurm_partition={slurm_cluster}", "hpo.executor.timeout_min=2",
               "hpo.executor.slurm_signal_delay_s=30", "hpo.storage.heartbeat_interval_s=2",
               "hpo.storage.grace_period_s=600", "hpo/pruner=none", "hpo.poll_s=2", "trainer.max_steps=1500",
               "trainer.val_every=300", "trainer.ckpt_every=100", "trainer.log_every=100",
               f"hydra.run.dir={tmp_path}"]
    process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    with ReleaseRequeued() as release:
        first = tmp_path / "trial_0000"
        wait_until(lambda: reached_step(first, 100) or reached_step(tmp_path / "trial_0001", 100), process, 300,
                   "a first trial at step 100")
        worker0 = next(j for j in job_ids(tmp_path) if j.endswith("_0"))
        subprocess.run(["scontrol", "requeue", worker0], check=True)
        stdout, stderr = process.communicate(timeout=1200)
    study = load_study(storage_at(tmp_path / "study.db"), "search")
    trials = study.trials
    assert process.returncode == 0, (stderr[-1500:], [(t.number, t.state.name, t.user_attrs.get("fail_reason"))
                                                      for t in trials], worker_tracebacks(tmp_path))
    finished = counted(trials, (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    assert len(finished) == n_trials and not retried(trials), [(t.number, t.state) for t in trials]
    assert [t.state for t in finished] == [TrialState.COMPLETE] * n_trials
    assert len(trials) == n_trials  # no retry was needed: each stopped trial was taken back by its worker

    worker_logs = "".join(p.read_text() for p in (tmp_path / "workers").glob("*/*_0_log.*"))
    assert "(resumed in trial_" in worker_logs, "no trial was stopped and resumed"
    assert "this job is timed-out" in worker_logs  # the time limit hit a worker
    assert {j.split("_")[0] for j in release.released} and any(len(sacct_states(j)) >= 2 for j in job_ids(tmp_path))
    for trial in finished:
        summary = json.loads((tmp_path / trial.user_attrs["run_dir"] / "summary.json").read_text())
        assert (summary["status"], summary["steps"]) == ("finished", 1500)
        assert summary["best_val_bits_per_event"] == pytest.approx(trial.value)


@pytest.mark.parametrize("command, message", [
    (["midiformer.train", "--multirun", "hydra/launcher=slurm"],
     "error: hydra.launcher.gpus_per_node=8: the default partition has no GPUs"),
    (["midiformer.train", "--multirun", "hydra/launcher=slurm_cpu", "hydra.launcher.cpus_per_task=64"],
     "error: hydra.launcher.nodes=1 x tasks_per_node=1 x cpus_per_task=64"),
    (["midiformer.hpo", "hpo.workers=1", "hpo.cluster=slurm", "hpo/executor=gpu"],
     "error: hpo.executor.gpus_per_node=1: the default partition has no GPUs"),
], ids=["gpu-preset-on-cpus", "more-cpus-than-a-node", "gpu-workers-on-cpus"])
def test_a_request_the_cluster_cannot_run_is_refused_before_sbatch(slurm_cluster, tmp_path, command,  # noqa: F811
                                                                 message):
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    result = subprocess.run([sys.executable, "-m", *command, f"hydra.sweep.dir={tmp_path}",
                             f"hydra.run.dir={tmp_path}"], cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    assert set(after) <= set(before) and not job_ids(tmp_path)  # nothing submitted


def test_a_job_cancelled_without_a_result_ends_the_wait(slurm_cluster, tmp_path, monkeypatch):  # noqa: F811
    """Without accounting submitit never learns that a cancelled job ended (sacct is how it asks): the wait
    finds it in squeue's ended jobs and stops, naming the job and its log."""
    import submitit

    from midiformer.common import TrainingError
    from midiformer.sweeps.slurm import wait_for_jobs

    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(timeout_min=5, cpus_per_task=1, mem_gb=1, slurm_partition=slurm_cluster)
    job = executor.submit(time.sleep, 300)
    deadline = time.time() + 120
    while job.state != "RUNNING" and time.time() < deadline:
        time.sleep(1)
    subprocess.run(["scancel", job.job_id], check=True)
    monkeypatch.setattr(type(job), "done", lambda self, force_check=False: False)  # as without sacct
    with pytest.raises(TrainingError) as error:
        wait_for_jobs([job], poll_s=0.5, grace_s=1)
    message = str(error.value)
    assert message.startswith(f"job {job.job_id} cancelled without a result") and str(job.paths.stdout) in message


def _threads_in_a_task() -> tuple[int | None, int]:
    import torch as task_torch

    from midiformer.train.distributed import cpu_threads

    threads = cpu_threads(None)
    task_torch.set_num_threads(threads)
    return threads, task_torch.get_num_threads()


def test_a_task_takes_as_many_threads_as_the_cpus_slurm_gave_it(slurm_cluster, tmp_path):  # noqa: F811
    import submitit

    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(timeout_min=5, cpus_per_task=2, mem_gb=1, slurm_partition=slurm_cluster)
    assert executor.submit(_threads_in_a_task).result() == (2, 2)


def test_a_search_whose_worker_is_cancelled_for_good_retries_its_trial_on_the_other(slurm_cluster, tmp_path,  # noqa: F811
                                                                                      cache_dir):
    """2 workers; worker 0 is `scancel`led mid-trial (no requeue: it is gone for good). The submitting
    command names the lost job and goes on; after grace_period_s without a heartbeat its trial is failed
    and retried by worker 1, which resumes it from its checkpoint in the same folder. The study ends with
    exactly n_trials counted, all complete: the failed original is replaced, not counted."""
    n_trials = 3
    command = [sys.executable, "-m", "midiformer.hpo", *tiny_overrides(cache_dir, *TINY_SPACE),
               f"hpo.n_trials={n_trials}", "hpo.workers=2", "hpo.cluster=slurm", "hpo/executor=cpu",
               f"hpo.executor.slurm_partition={slurm_cluster}", "hpo.executor.timeout_min=20",
               "hpo.storage.heartbeat_interval_s=2", "hpo.storage.grace_period_s=20", "hpo/pruner=none",
               "hpo.poll_s=2", "trainer.max_steps=800", "trainer.val_every=400", "trainer.ckpt_every=100",
               "trainer.log_every=100", f"hydra.run.dir={tmp_path}"]
    process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    storage = tmp_path / "study.db"

    def worker0_trial() -> Path | None:
        from sqlalchemy.exc import SQLAlchemyError

        from midiformer.common import ConfigError

        if not storage.exists():
            return None
        try:
            trials = load_study(storage_at(storage), "search").trials
        except (ConfigError, SQLAlchemyError):  # the file, but not yet the study in it
            return None
        mine = [t for t in trials if str(t.user_attrs.get("worker", "")).endswith("_0") and "run_dir" in t.user_attrs]
        return tmp_path / mine[0].user_attrs["run_dir"] if mine else None

    wait_until(lambda: (folder := worker0_trial()) is not None and (folder / "checkpoints" / "last.pt").exists(),
               process, 300, "worker 0's trial at its first checkpoint")
    dead_folder = worker0_trial()
    worker0 = next(j for j in job_ids(tmp_path) if j.endswith("_0"))
    subprocess.run(["scancel", worker0], check=True)
    stdout, stderr = process.communicate(timeout=1200)
    trials = load_study(storage_at(storage), "search").trials
    assert process.returncode == 0, (stderr[-1500:], [(t.number, t.state.name, t.user_attrs.get("fail_reason"))
                                                      for t in trials], worker_tracebacks(tmp_path))
    assert f"worker job {worker0} ended without a result (CANCELLED" in stdout + stderr  # named; the search went on

    [dead] = [t for t in trials if t.state == TrialState.FAIL]
    assert retried(trials) == {dead.number} and tmp_path / dead.user_attrs["run_dir"] == dead_folder
    assert [t.state for t in counted(trials, (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))] == \
        [TrialState.COMPLETE] * n_trials
    [retry] = [t for t in trials if t.number != dead.number and t.user_attrs["run_dir"] == dead.user_attrs["run_dir"]]
    assert retry.params == dead.params and not retry.user_attrs["worker"].endswith("_0")
    worker1_log = "".join(p.read_text() for p in (tmp_path / "workers").glob("*_1/*_0_log.err"))
    assert f"resuming from {dead_folder / 'checkpoints' / 'last.pt'}" in worker1_log
    summary = json.loads((dead_folder / "summary.json").read_text())
    assert (summary["status"], summary["steps"]) == ("finished", 800)
