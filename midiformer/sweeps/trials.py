"""One worker's hold on a shared study: which trial to run next, exactly n_trials in all, heartbeats.

A trial belongs to the worker that asked for it (user attribute `worker`: a SLURM job id such as
`1234_0`, the same after a requeue, or `<host>:search` for the search in this process). A requeued or
rerun worker first takes back its own RUNNING trial, which resumes from its checkpoint (its run folder
is the same). A trial whose worker is gone for good (no heartbeat for grace_period_s, a storage with
heartbeats) is failed and retried by `optuna.storages.fail_stale_trials` and the storage's
RetryHeartbeatStaleTrialCallback: the retry inherits the run folder and resumes from its checkpoint, and the
failed original no longer takes one of the n_trials places. Everything here goes through one lock file,
so N workers never overshoot.
"""
from __future__ import annotations

import logging
import signal
import socket
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages.journal import JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

from midiformer.common import STOP_SIGNALS, ConfigError
from midiformer.sweeps.study import open_storage

log = logging.getLogger("midiformer.hpo")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
WORKER, RUN_DIR = "worker", "run_dir"  # user attributes: who runs the trial, and its run folder (relative)
INTERRUPTED = "interrupted: left running with no worker and no heartbeat (a search that was killed)"


def local_identity() -> str:
    """The worker name of the search run in this process: the same for a rerun on this machine, so that
    it takes back the trial a killed search left running."""
    return f"{socket.gethostname()}:search"


def retried(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the failed trials a retry replaced: they no longer count."""
    return {n for t in trials if (n := RetryHeartbeatStaleTrialCallback.retried_trial_number(t)) is not None}


def counted(trials: list[FrozenTrial], states: tuple[TrialState, ...]) -> list[FrozenTrial]:
    gone = retried(trials)
    return [t for t in trials if t.state in states and t.number not in gone]


class SharedStudy:
    def __init__(self, cfg: DictConfig, study_dir: Path, worker: int = 0, me: str | None = None):
        self.cfg, self.study_dir, self.me = cfg, Path(study_dir), me or local_identity()
        self.n_trials = cfg.hpo.n_trials
        storage_cfg = OmegaConf.to_container(cfg.hpo.storage, resolve=True) \
            if OmegaConf.is_config(cfg.hpo.storage) else cfg.hpo.storage
        max_retry = cfg.hpo.max_retry
        if not (isinstance(max_retry, int) and max_retry >= 0):
            raise ConfigError(f"hpo.max_retry={max_retry!r} must be an integer >= 0")
        self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry, inherit_intermediate_values=True)
        self.storage = open_storage(storage_cfg, self.study_dir, on_stale=self._on_stale)
        interval = getattr(self.storage, "get_heartbeat_interval", lambda: None)()
        self.heartbeat_s: int | None = interval
        self.study = self._open(worker)
        self.study_id = self.storage.get_study_id_from_name(cfg.hpo.study_name)
        self.lock = JournalFileOpenLock(str(self.study_dir / "trials"))  # trials.lock beside the storage

    def _open(self, worker: int) -> optuna.Study:
        """Create or load the study. The sampler's seed depends on the worker and on the trials already
        there, so that a rerun or a second worker does not propose the first trials' parameters again."""
        from hydra.utils import instantiate

        cfg = self.cfg
        existing = optuna.load_study(study_name=cfg.hpo.study_name, storage=self.storage) \
            if cfg.hpo.study_name in optuna.get_all_study_names(self.storage) else None
        seed = int(np.random.SeedSequence([cfg.hpo.seed, worker, len(existing.trials) if existing else 0])
                   .generate_state(1)[0])

        def build(option: str, node: DictConfig, **kwargs):
            try:
                return instantiate(node, **kwargs)
            except Exception as error:  # Hydra wraps the library's message in several lines
                raise ConfigError(f"{option}: {str(error).splitlines()[0]}") from None

        return optuna.create_study(study_name=cfg.hpo.study_name, storage=self.storage,
                                   sampler=build("hpo.sampler", cfg.hpo.sampler, seed=seed),
                                   pruner=build("hpo.pruner", cfg.hpo.pruner), direction="minimize",
                                   load_if_exists=True)

    def _on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        log.warning("trial %d: no heartbeat for over %s s (worker %s is gone); retried, resuming from its "
                    "checkpoint in %s", trial.number, self.storage.grace_period, trial.user_attrs.get(WORKER),
                    trial.user_attrs.get(RUN_DIR))
        self._retry(study, trial)

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def finished(self) -> list[FrozenTrial]:
        return counted(self.trials(), FINISHED)

    # --- claiming a trial, under the lock -------------------------------------------------------

    def claim(self) -> tuple[optuna.Trial, bool] | None:
        """(trial, resumed): this worker's own RUNNING trial, else a retry or a new trial while the study
        holds fewer than n_trials; None when there is nothing left for this worker to start. SIGUSR2 and
        SIGTERM wait until the claim is recorded: a trial asked for but not yet named would be an orphan."""
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self.lock.acquire()
        try:
            fail_stale_trials(self.study)
            self._fail_orphans()
            trials = self.trials()
            mine = [t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get(WORKER) == self.me]
            if mine:
                trial, resumed = optuna.trial.Trial(self.study, self.trial_id(mine[0].number)), True
                log.info("worker %s takes back its trial %d", self.me, trial.number)
            elif len(counted(trials, FINISHED + (TrialState.RUNNING,))) < self.n_trials:
                with warnings.catch_warnings():  # "heartbeat is supposed to be used with optimize": we beat
                    warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                    trial = self.study.ask()  # a WAITING trial (a retry, an enqueued one) first
                resumed = False
                trial.set_user_attr(WORKER, self.me)
            else:
                return None
            self.beat(trial.number)
            return trial, resumed
        finally:
            self.lock.release()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _fail_orphans(self) -> None:
        """RUNNING trials no worker of ours asked for (a killed search of an older version, a notebook's
        study.ask()) have no heartbeat, so they never go stale: record them as failed, counted."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if WORKER not in trial.user_attrs:
                self.storage.set_trial_user_attr(self.trial_id(trial.number), "fail_reason", INTERRUPTED)
                self.study.tell(trial.number, state=TrialState.FAIL)
                log.warning("trial %d was %s; recorded as failed", trial.number, INTERRUPTED)

    def running_elsewhere(self) -> list[FrozenTrial]:
        """Other workers' trials still running (or waiting to be retried): the study is not done yet.
        Without heartbeats a dead worker's trial would look alive forever: then nothing is waited for."""
        if self.heartbeat_s is None:
            return []
        return [t for t in self.trials() if t.state in (TrialState.RUNNING, TrialState.WAITING)]

    # --- heartbeats -----------------------------------------------------------------------------

    def beat(self, number: int) -> None:
        if self.heartbeat_s is not None:
            self.storage.record_heartbeat(self.trial_id(number))

    @contextmanager
    def heartbeat(self, number: int) -> Iterator[None]:
        """A heartbeat every heartbeat_s seconds while the trial runs in this process (a daemon thread: a
        process that dies takes it along, and the trial goes stale)."""
        if self.heartbeat_s is None:
            yield
            return
        stop = threading.Event()

        def beat_until_stopped() -> None:
            while not stop.wait(self.heartbeat_s):
                self.beat(number)

        thread = threading.Thread(target=beat_until_stopped, name=f"heartbeat-{number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
