"""midiformer's submitit launchers (hydra/launcher=slurm|slurm_cpu|local): hydra-submitit-launcher's, plus
  - a request checked against the partition before sbatch (midiformer/sweeps/slurm.py), refused in one line;
  - tasks other than rank 0 write nothing into the run folder: no .hydra/, no train.log (their log is
    submitit's per-task file, .submitit/<job>/<job>_<task>_log.out);
  - a wait that ends when a job is gone without a result, instead of polling forever.
Hydra instantiates launchers only from the hydra_plugins package, hence this module; its imports stay light
because Hydra imports every plugin module at start-up.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, List, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

POLL_S = 5  # seconds between looks at the jobs (submitit rate-limits its sacct calls by itself)
LOST_AFTER_S = 60  # a job ended this long without its result file has none coming


class _Checked:
    _EXECUTOR: str
    params: dict
    config: Any

    def __call__(self, sweep_overrides: List[str], *args: Any, **kwargs: Any) -> JobReturn:
        import submitit

        from midiformer.common import QUIET_RANK_OVERRIDES

        if submitit.JobEnvironment().global_rank > 0:
            sweep_overrides = [*sweep_overrides, *QUIET_RANK_OVERRIDES]
        return super().__call__(sweep_overrides, *args, **kwargs)

    def check(self) -> None:
        pass

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """hydra-submitit-launcher's launch, with the request checked first and a wait that ends."""
        import submitit

        from midiformer.common import ConfigError, TrainingError
        from midiformer.sweeps.slurm import wait_for_jobs

        try:
            self.check()
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        params = dict(self.params)
        init_keys = {"submitit_folder", "max_num_timeout"}
        init = {f"{self._EXECUTOR}_{k}": params[k] for k in init_keys - {"submitit_folder"} if k in params}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=params["submitit_folder"], **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in params.items() if k not in init_keys})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        log.info("submitted: %s (follow: squeue --me; logs: %s)", " ".join(j.job_id for j in jobs),
                 params["submitit_folder"].replace("%j", "<job id>"))
        log.info("to resume these runs after a cancel or a crash: the same command with hydra.sweep.dir=%s",
                 sweep_dir)
        try:
            wait_for_jobs(jobs, poll_s=POLL_S, grace_s=LOST_AFTER_S)
        except TrainingError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)
        returns = [job.results()[0] for job in jobs]  # every task returns; task 0's is the run's
        for idx, (job, ret) in enumerate(zip(jobs, returns), start=initial_job_idx):
            try:
                outcome = f"returned {ret.return_value!r}"  # train: the best validation bits/event
            except Exception as error:  # the job's own exception, raised again by Hydra after this
                outcome = f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            folder = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir", default="?") if ret.hydra_cfg else "?"
            log.info("#%d (job %s) %s; run folder %s", idx, job.job_id, outcome, folder)
        return returns


class SlurmLauncher(_Checked, submitit_launcher.SlurmLauncher):
    def check(self) -> None:
        from midiformer.sweeps.slurm import Request, check_request

        p = self.params
        check_request(Request("hydra.launcher.", nodes=p["nodes"], tasks_per_node=p["tasks_per_node"],
                              cpus_per_task=p.get("cpus_per_task"), gpus_per_node=p.get("gpus_per_node"),
                              mem_gb=p.get("mem_gb"), timeout_min=p["timeout_min"],
                              signal_delay_s=p["signal_delay_s"], partition=p.get("partition")))


class LocalLauncher(_Checked, submitit_launcher.LocalLauncher):
    pass
