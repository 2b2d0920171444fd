"""python -m midiformer.hpo — hyperparameter search with Optuna; every trial is an ordinary run folder.

    python -m midiformer.hpo hpo.study_name=width_lr hpo.n_trials=40 trainer.max_steps=1000
    python -m midiformer.hpo hpo/pruner=hyperband hpo/space=small experiment=scalenorm
    python -m midiformer.hpo hpo.workers=8 hpo/executor=cpu hpo.executor.slurm_partition=debug   # SLURM

The study folder (outputs/hpo/<study_name>/) holds the storage and one run folder per trial
(trial_0000/, ...). hpo.n_trials is the total: the search ends when the study holds n_trials finished
trials (complete, pruned or failed), never more, over reruns and workers (midiformer/sweeps/trials.py).
A trial stopped by a signal (preemption, a time limit, Ctrl-C) is not told to the study: it stays
RUNNING, and its worker, requeued (workers are submitit Checkpointables) or rerun, resumes it from its
checkpoint. A trial whose worker died for good is retried once its heartbeat is stale. A trial that
fails (a non-finite loss, out of memory, a bad combination of options) is recorded as failed with its
reason (user attribute fail_reason) and the search goes on; any other error is recorded the same way,
then stops the search (it is a bug, not a bad trial).
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import hydra
import optuna
import submitit
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from midiformer.common import CONF_DIR, ConfigError, TrainingError, exit_on_user_error
from midiformer.sweeps.slurm import Request, check_request, wait_for_jobs
from midiformer.sweeps.trials import FINISHED, INTERRUPTED, RUN_DIR, WORKER, SharedStudy  # noqa: F401
from midiformer.train.loop import StopRun, train

log = logging.getLogger("midiformer.hpo")

TRIAL_FAILURES = (ConfigError, TrainingError, torch.OutOfMemoryError, MemoryError)
# the trial was stopped, not broken: SIGUSR2/SIGTERM handed over to submitit (which requeued the job and
# exits), submitit refusing a requeue (too many time-outs), Ctrl-C. It stays RUNNING and resumes.
HANDED_OVER = (SystemExit, KeyboardInterrupt, submitit.core.utils.UncompletedJobError)


# --- the search space: conf/hpo/space/*.yaml --------------------------------------------------------

def space_items(space: DictConfig, prefix: str = "") -> Iterator[tuple[str, DictConfig]]:
    """(training option, its spec) for every leaf of the nested space; a spec has `choices` or `low`."""
    for key, node in space.items():
        if not isinstance(node, DictConfig):
            raise ConfigError(f"hpo.space.{prefix}{key} must be a spec like {{choices: [...]}} or {{low: .., high: ..}}")
        if "choices" in node or "low" in node:
            yield f"{prefix}{key}", node
        else:
            yield from space_items(node, f"{prefix}{key}.")


def check_space(cfg: DictConfig) -> None:
    """Every searched key is an option of the training config, every spec well formed: before any trial."""
    items = list(space_items(cfg.hpo.space))
    if not items:
        raise ConfigError("hpo.space is empty: name at least one training option to search")
    for name, spec in items:
        if name.startswith("hpo.") or OmegaConf.select(cfg, name, default=KeyError) is KeyError:
            raise ConfigError(f"hpo.space.{name}: {name} is not an option of the training config")
        if "choices" in spec:
            if not OmegaConf.is_list(spec.choices) or len(spec.choices) == 0:
                raise ConfigError(f"hpo.space.{name}.choices must be a non-empty list")
        elif not (_is_number(spec.get("low")) and _is_number(spec.get("high")) and spec.low < spec.high):
            raise ConfigError(f"hpo.space.{name} needs numbers low < high (got low={spec.get('low')}, "
                              f"high={spec.get('high')})")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def suggest(trial: optuna.Trial, space: DictConfig) -> dict[str, Any]:
    params = {}
    for name, spec in space_items(space):
        if "choices" in spec:
            params[name] = trial.suggest_categorical(name, list(spec.choices))
        elif isinstance(spec.low, int) and isinstance(spec.high, int):
            params[name] = trial.suggest_int(name, spec.low, spec.high, step=spec.get("step") or 1,
                                             log=bool(spec.get("log", False)))
        else:
            params[name] = trial.suggest_float(name, float(spec.low), float(spec.high), step=spec.get("step"),
                                               log=bool(spec.get("log", False)))
    return params


def trial_config(cfg: DictConfig, params: dict[str, Any]) -> DictConfig:
    """The training config of one trial: the search's config without `hpo`, with the trial's values."""
    train_cfg = OmegaConf.to_container(cfg, resolve=True)
    train_cfg.pop("hpo")
    train_cfg = OmegaConf.create(train_cfg)
    for name, value in params.items():
        OmegaConf.update(train_cfg, name, value, merge=False)
    return train_cfg


# --- one trial ------------------------------------------------------------------------------------

def pruning_reporter(trial: optuna.Trial):
    def on_validation(step: int, metrics: dict[str, float]) -> None:
        trial.report(metrics["val/bits_per_event"], step)
        if trial.should_prune():
            raise StopRun(f"pruned at step {step}")

    return on_validation


def run_trial(study: optuna.Study, trial: optuna.Trial, cfg: DictConfig, study_dir: Path, resumed: bool = False) -> None:
    run_name = trial.user_attrs.get(RUN_DIR)  # a retry inherits the folder of the trial it replaces
    if run_name is None:
        run_name = f"trial_{trial.number:04d}"
        trial.set_user_attr(RUN_DIR, run_name)  # relative: the study folder can move
    try:
        params = suggest(trial, cfg.hpo.space)  # a resumed trial gets back the values it was given
        again = resumed or (study_dir / run_name / "checkpoints" / "last.pt").exists()  # taken back, or a retry
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        log.info("trial %d%s: %s", trial.number, f" (resumed in {run_name})" if again else "", shown)
        value = train(trial_config(cfg, params), study_dir / run_name, on_validation=pruning_reporter(trial))
    except StopRun:
        study.tell(trial, state=TrialState.PRUNED)
    except TRIAL_FAILURES as error:
        _fail(study, trial, error)
    except HANDED_OVER:
        log.warning("trial %d stopped by a signal; left running: its worker, requeued or rerun, resumes it "
                    "from its checkpoint in %s", trial.number, run_name)
        raise
    except BaseException as error:  # a bug: record it, then stop the search
        _fail(study, trial, error)
        raise
    else:
        study.tell(trial, value)


def _fail(study: optuna.Study, trial: optuna.Trial, error: BaseException) -> None:
    reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)
    log.warning("trial %d failed: %s", trial.number, reason)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # an out-of-memory trial must not starve the next one


def log_progress(shared: SharedStudy) -> None:
    trials = shared.finished()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    by_state = {s.name.lower(): sum(t.state == s for t in trials) for s in FINISHED}
    log.info("[%d/%d finished: %s] best %s", len(trials), shared.n_trials,
             ", ".join(f"{n} {name}" for name, n in by_state.items()),
             f"{best.value:.4f} bits/event (trial {best.number})" if best else "-")


# --- workers --------------------------------------------------------------------------------------

def run_worker(cfg: dict | DictConfig, study_dir: str | Path, worker: int = 0, me: str | None = None) -> int:
    """Run trials until the study holds n_trials finished ones; returns how many this worker ran. While
    other workers' trials run it waits (a heartbeat apart), to take over any whose worker dies."""
    if not logging.getLogger().handlers:  # a submitit job starts without Hydra's logging
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    cfg, study_dir = OmegaConf.create(cfg), Path(study_dir)
    shared = SharedStudy(cfg, study_dir, worker, me)
    ran = 0
    while True:
        claimed = shared.claim()
        if claimed is None:
            others = shared.running_elsewhere()
            if not others:
                return ran
            log.info("worker %s: waiting for trial(s) %s of other workers", shared.me,
                     ", ".join(str(t.number) for t in others))
            time.sleep(shared.heartbeat_s)
            continue
        trial, resumed = claimed
        with shared.heartbeat(trial.number):
            run_trial(shared.study, trial, cfg, study_dir, resumed)
        log_progress(shared)
        ran += 1


class SearchWorker(submitit.helpers.Checkpointable):
    """A worker as a submitit job. Checkpointable: at a time limit or a preemption (SIGUSR2) submitit
    requeues the job with this same callable, whose rerun takes back the trial it was running (the job
    id, its `worker` name, survives the requeue); a plain function would end "not checkpointable"."""

    def __call__(self, cfg: dict, study_dir: str, worker: int) -> int:
        return run_worker(cfg, study_dir, worker, me=submitit.JobEnvironment().job_id)


def run_on_submitit(cfg: DictConfig, study_dir: Path, shared: SharedStudy) -> None:
    resources = {k: v for k, v in OmegaConf.to_container(cfg.hpo.executor, resolve=True).items() if v is not None}
    max_num_timeout = resources.pop("slurm_max_num_timeout", 20)
    executor = submitit.AutoExecutor(folder=study_dir / "workers" / "%j", cluster=cfg.hpo.cluster,
                                     slurm_max_num_timeout=max_num_timeout)
    if executor.cluster == "slurm":
        check_request(Request("hpo.executor.", cpus_per_task=resources.get("cpus_per_task"),
                              gpus_per_node=resources.get("gpus_per_node"), mem_gb=resources.get("mem_gb"),
                              timeout_min=resources.get("timeout_min", 60),
                              signal_delay_s=resources.get("slurm_signal_delay_s", 90),
                              partition=resources.get("slurm_partition")))
    executor.update_parameters(name=f"hpo-{cfg.hpo.study_name}", **resources)
    n = cfg.hpo.workers
    jobs = executor.map_array(SearchWorker(), [OmegaConf.to_container(cfg, resolve=True)] * n,
                              [str(study_dir)] * n, list(range(n)))
    log.info("%d workers submitted (%s): %s; their logs: %s", n, executor.cluster,
             " ".join(job.job_id for job in jobs), study_dir / "workers")
    gone = wait_for_jobs(jobs, cfg.hpo.poll_s, on_poll=lambda: log_progress(shared), tolerate_lost=True)
    for job in jobs:
        if job in gone:  # its trial goes stale and another worker retries it
            continue
        try:
            job.result()
        except submitit.core.utils.UncompletedJobError:  # cancelled or killed: gone, like the ones above
            log.warning("worker job %s ended without a result (%s): a trial it left running is retried by another "
                        "worker once its heartbeat is stale; its log: %s", job.job_id, job.state, job.paths.stderr)
        except Exception as error:  # an exception in the worker: a bug, not a lost machine
            raise TrainingError(f"worker job {job.job_id} failed: {remote_error(error)}; "
                                f"its log: {job.paths.stderr}") from None


def remote_error(error: Exception) -> str:
    """The exception line of a failed submitit job: its message wraps the remote traceback between dashed
    lines, followed by where the logs are."""
    message = str(error).strip()
    parts = message.split("-" * 22)
    trace = parts[1] if len(parts) >= 3 else message
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def search(cfg: DictConfig, study_dir: str | Path) -> optuna.Study:
    """Run (or continue) the study in `study_dir` until it holds hpo.n_trials finished trials."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    check_space(cfg)
    if not (isinstance(cfg.hpo.n_trials, int) and cfg.hpo.n_trials > 0):
        raise ConfigError(f"hpo.n_trials={cfg.hpo.n_trials!r} must be a positive integer")
    shared = SharedStudy(cfg, study_dir)
    log.info("study %s in %s: %d of %d trials finished", cfg.hpo.study_name, study_dir.resolve(),
             len(shared.finished()), cfg.hpo.n_trials)
    if shared.heartbeat_s is None:
        log.warning("hpo/storage=%s has no heartbeats: a trial whose worker dies for good (not requeued) is "
                    "never retried, and the study may end short of hpo.n_trials", cfg.hpo.storage.name)
    if cfg.hpo.workers:
        run_on_submitit(cfg, study_dir, shared)
    else:
        run_worker(cfg, study_dir, me=shared.me)
    log_progress(shared)
    left = [t.number for t in shared.trials() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if left:
        log.warning("trial(s) %s not finished: run the same command again to finish them", left)
    log.info("report: python -m midiformer.report %s", study_dir)
    return shared.study


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="hpo")
def main(cfg: DictConfig) -> None:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # e.g. TPE's multivariate
    exit_on_user_error(search, cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
