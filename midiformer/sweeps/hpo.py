"""python -m midiformer.hpo — hyperparameter search with Optuna; every trial is an ordinary run folder.

    python -m midiformer.hpo hpo.study_name=width_lr hpo.n_trials=40 trainer.max_steps=1000
    python -m midiformer.hpo hpo/pruner=hyperband hpo/space=small experiment=scalenorm
    python -m midiformer.hpo hpo.storage=journal hpo.workers=8 hpo.executor.slurm_partition=gpu   # SLURM

The study folder (outputs/hpo/<study_name>/) holds the storage and one run folder per trial
(trial_0000/, ...). hpo.n_trials is the total: rerunning the same command after a kill continues
until the study holds n_trials finished trials (complete, pruned or failed), never more. A trial
left RUNNING by a killed search is marked failed ("interrupted") when the search starts again, and
counts as one of the n_trials. Workers count and ask under one lock file, so N workers never
overshoot either. A trial that fails (a non-finite loss, out of memory, a bad combination of
options) is recorded as failed with its reason (user attribute fail_reason) and the search goes on;
any other error is recorded the same way, then stops the search (it is a bug, not a bad trial).
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import hydra
import numpy as np
import optuna
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.storages.journal import JournalFileOpenLock
from optuna.trial import TrialState

from midiformer.common import CONF_DIR, ConfigError, TrainingError, exit_on_user_error
from midiformer.sweeps.study import storage_for
from midiformer.train.loop import StopRun, train

log = logging.getLogger("midiformer.hpo")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
COUNTED = FINISHED + (TrialState.RUNNING,)  # a running trial will finish: it already takes its place
TRIAL_FAILURES = (ConfigError, TrainingError, torch.OutOfMemoryError, MemoryError)
INTERRUPTED = "interrupted: left running by a search that was killed"


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


# --- the study ------------------------------------------------------------------------------------

def open_study(cfg: DictConfig, study_dir: Path, worker: int = 0) -> optuna.Study:
    """Create or load the study. The sampler's seed depends on the worker and on the trials already in the
    study, so that a rerun or a second worker does not propose the first trials' parameters again."""
    storage = storage_for(cfg.hpo.storage, study_dir)
    existing = optuna.load_study(study_name=cfg.hpo.study_name, storage=storage) \
        if cfg.hpo.study_name in optuna.get_all_study_names(storage) else None
    seed = int(np.random.SeedSequence([cfg.hpo.seed, worker, len(existing.trials) if existing else 0])
               .generate_state(1)[0])
    sampler, pruner = _build("hpo.sampler", cfg.hpo.sampler, seed=seed), _build("hpo.pruner", cfg.hpo.pruner)
    return optuna.create_study(study_name=cfg.hpo.study_name, storage=storage, sampler=sampler, pruner=pruner,
                               direction="minimize", load_if_exists=True)


def _build(option: str, node: DictConfig, **kwargs: Any) -> Any:
    try:
        return instantiate(node, **kwargs)
    except Exception as error:  # Hydra wraps the library's message in several lines
        raise ConfigError(f"{option}: {str(error).splitlines()[0]}") from None


def count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def fail_interrupted(study: optuna.Study) -> None:
    """Trials a killed search left RUNNING will never finish: record them as failed."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", INTERRUPTED)  # no public API for it
        study.tell(trial.number, state=TrialState.FAIL)
        log.warning("trial %d was %s; recorded as failed", trial.number, INTERRUPTED)


def next_trial(study: optuna.Study, n_trials: int, lock: JournalFileOpenLock) -> optuna.Trial | None:
    """A new trial, or None once the study holds n_trials; atomic across workers (the lock file)."""
    lock.acquire()
    try:
        return study.ask() if count(study, COUNTED) < n_trials else None
    finally:
        lock.release()


# --- one trial ------------------------------------------------------------------------------------

def pruning_reporter(trial: optuna.Trial):
    def on_validation(step: int, metrics: dict[str, float]) -> None:
        trial.report(metrics["val/bits_per_event"], step)
        if trial.should_prune():
            raise StopRun(f"pruned at step {step}")

    return on_validation


def run_trial(study: optuna.Study, trial: optuna.Trial, cfg: DictConfig, study_dir: Path) -> None:
    run_dir = study_dir / f"trial_{trial.number:04d}"
    trial.set_user_attr("run_dir", run_dir.name)  # relative: the study folder can move
    try:
        params = suggest(trial, cfg.hpo.space)
        log.info("trial %d: %s", trial.number, " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                      for k, v in params.items()))
        value = train(trial_config(cfg, params), run_dir, on_validation=pruning_reporter(trial))
    except StopRun:
        study.tell(trial, state=TrialState.PRUNED)
    except TRIAL_FAILURES as error:
        _fail(study, trial, error)
    except BaseException as error:  # a bug, Ctrl-C, a signal: record it, then stop the search
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


def log_progress(study: optuna.Study, n_trials: int) -> None:
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    by_state = {s.name.lower(): sum(t.state == s for t in trials) for s in FINISHED}
    log.info("[%d/%d finished: %s] best %s", len(trials), n_trials,
             ", ".join(f"{n} {name}" for name, n in by_state.items()),
             f"{best.value:.4f} bits/event (trial {best.number})" if best else "-")


# --- workers --------------------------------------------------------------------------------------

def run_worker(cfg: dict | DictConfig, study_dir: str | Path, worker: int = 0) -> int:
    """Pull trials from the study until it holds n_trials. In this process, or as a submitit job."""
    if not logging.getLogger().handlers:  # a submitit job starts without Hydra's logging
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    cfg, study_dir = OmegaConf.create(cfg), Path(study_dir)
    study = open_study(cfg, study_dir, worker)
    lock = JournalFileOpenLock(str(study_dir / "trials"))  # trials.lock beside the storage
    ran = 0
    while (trial := next_trial(study, cfg.hpo.n_trials, lock)) is not None:
        run_trial(study, trial, cfg, study_dir)
        log_progress(study, cfg.hpo.n_trials)
        ran += 1
    return ran


def run_on_submitit(cfg: DictConfig, study_dir: Path) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=study_dir / "workers" / "%j", cluster=cfg.hpo.cluster)
    resources = {k: v for k, v in OmegaConf.to_container(cfg.hpo.executor, resolve=True).items() if v is not None}
    executor.update_parameters(name=f"hpo-{cfg.hpo.study_name}", **resources)
    n = cfg.hpo.workers
    jobs = executor.map_array(run_worker, [OmegaConf.to_container(cfg, resolve=True)] * n, [str(study_dir)] * n,
                              list(range(n)))
    log.info("%d workers submitted (%s): %s", n, executor.cluster, ", ".join(job.job_id for job in jobs))
    study = open_study(cfg, study_dir)
    while not all(job.done() for job in jobs):
        time.sleep(cfg.hpo.poll_s)
        log_progress(study, cfg.hpo.n_trials)
    for job in jobs:
        job.result()  # a worker's error comes out here, with its log's path
    log_progress(study, cfg.hpo.n_trials)


def search(cfg: DictConfig, study_dir: str | Path) -> optuna.Study:
    """Run (or continue) the study in `study_dir` until it holds hpo.n_trials finished trials."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    check_space(cfg)
    if not (isinstance(cfg.hpo.n_trials, int) and cfg.hpo.n_trials > 0):
        raise ConfigError(f"hpo.n_trials={cfg.hpo.n_trials!r} must be a positive integer")
    study = open_study(cfg, study_dir)
    fail_interrupted(study)
    log.info("study %s in %s: %d of %d trials finished", cfg.hpo.study_name, study_dir.resolve(),
             count(study, FINISHED), cfg.hpo.n_trials)
    if cfg.hpo.workers:
        run_on_submitit(cfg, study_dir)
    else:
        run_worker(cfg, study_dir)
    log.info("report: python -m midiformer.report %s", study_dir)
    return study


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="hpo")
def main(cfg: DictConfig) -> None:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # e.g. TPE's multivariate
    exit_on_user_error(search, cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
