"""What SLURM jobs need from us on both paths (hydra/launcher=slurm|slurm_cpu, and hpo.workers): a request
checked against the partition before sbatch, and a wait for jobs that ends when a job is gone.

Why the checks: sbatch refuses a GPU request on a partition without GPUs with a cryptic gres error, and
accepts a request no node can hold (8 tasks x 8 CPUs on 2-CPU nodes): that job pends forever
(reason PartitionConfig) and the submitting command waits with it. Why the wait: submitit learns a job's
end from `sacct`; without accounting a job that dies without a result (scancel, a kill before its handlers
exist) is UNKNOWN forever and submitit polls forever. `squeue -t all` still knows it for MinJobAge.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from midiformer.common import ConfigError, TrainingError

log = logging.getLogger("midiformer.slurm")

# squeue states of a job that will not run again (a requeued job is PENDING or REQUEUED, not these)
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "TIMEOUT", "SPECIAL_EXIT", "REVOKED"}
# pending reasons that no amount of waiting resolves
NEVER_STARTS = {"PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints", "InvalidAccount",
                "InvalidQOS", "QOSMaxCpuPerJobLimit", "QOSMaxMemoryPerJob", "AssocMaxCpuPerJobLimit"}


@dataclass(frozen=True)
class Request:
    """One job's resources, in the launcher's terms; `prefix` names the options in error messages."""
    prefix: str
    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    mem_gb: float | None = None
    timeout_min: int = 60
    signal_delay_s: int = 120
    partition: str | None = None


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: int


def partition_nodes(partition: str | None) -> list[Node] | None:
    """The nodes of `partition` (the default one when None), or None where there is no `sinfo`."""
    if shutil.which("sinfo") is None:
        return None
    command = ["sinfo", "-h", "-N", "-o", "%N|%c|%m|%G"] + (["-p", partition] if partition else [])
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return None  # a broken sinfo: let sbatch speak
    nodes = []
    for line in sorted(set(done.stdout.split())):
        name, cpus, mem, gres = line.split("|")
        gpus = sum(int(part.split(":")[-1].split("(")[0]) for part in gres.split(",") if part.startswith("gpu:"))
        nodes.append(Node(name, int(cpus.rstrip("+")), int(mem.rstrip("+")), gpus))
    return nodes


def check_request(request: Request, nodes: list[Node] | None = None) -> None:
    """Refuse, before sbatch, a request that cannot run: one line naming the option."""
    p = request.prefix
    if request.signal_delay_s >= request.timeout_min * 60:
        raise ConfigError(f"{p}signal_delay_s={request.signal_delay_s} must be below {p}timeout_min="
                          f"{request.timeout_min} x 60 s: SIGUSR2 would come at once, and every job would requeue")
    if request.timeout_min * 60 - request.signal_delay_s < 60 + 30:
        # sbatch(1): "the signal may be sent up to 60 seconds earlier than specified"; a job needs ~30 s to
        # start Python and submitit's handlers, and a signal before them kills it unrequeued
        log.warning("%ssignal_delay_s=%d with timeout_min=%d: SLURM may send SIGUSR2 up to 60 s early, possibly "
                    "before the job's handlers exist", p, request.signal_delay_s, request.timeout_min)
    if nodes is None:
        nodes = partition_nodes(request.partition)
    if not nodes:  # no sinfo (not on a cluster) or an unknown partition: sbatch gives its own error
        return
    where = f"partition {request.partition}" if request.partition else "the default partition"
    gpus = request.gpus_per_node or 0
    if gpus and not any(node.gpus for node in nodes):
        raise ConfigError(f"{p}gpus_per_node={gpus}: {where} has no GPUs; use {p}gpus_per_node=0 "
                          f"(hydra/launcher=slurm_cpu is the CPU preset)")
    fitting = [n for n in nodes if n.gpus >= gpus
               and n.cpus >= request.tasks_per_node * (request.cpus_per_task or 1)
               and (request.mem_gb is None or n.mem_mb >= request.mem_gb * 1024)]
    if len(fitting) < request.nodes:
        biggest = max(nodes, key=lambda n: (n.cpus, n.mem_mb))
        raise ConfigError(
            f"{p}nodes={request.nodes} x tasks_per_node={request.tasks_per_node} x cpus_per_task="
            f"{request.cpus_per_task or 1}, mem_gb={request.mem_gb}, gpus_per_node={gpus}: only {len(fitting)} "
            f"node(s) of {where} can hold that (its largest: {biggest.cpus} CPUs, {biggest.mem_mb // 1024} GB, "
            f"{biggest.gpus} GPUs); the job would wait forever")


# --- waiting for jobs -----------------------------------------------------------------------------

def queue_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} from squeue, which knows ended jobs for MinJobAge; None without squeue."""
    if not job_ids or shutil.which("squeue") is None:
        return None
    # -r: one line per array task, also while the tasks of an array still pend as one line (12_[0-3])
    done = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        return None
    states = {}
    for line in done.stdout.splitlines():
        if line.count("|") < 2:
            continue
        job_id, state, reason = line.strip().split("|", 2)
        states[job_id] = (state, reason)
    return states


# squeue states of a job SLURM is still running or will run (a requeued one included)
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
          "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}


class JobWatch:
    """Follows submitit jobs. A job is pending while submitit has no final result for it or SLURM still
    runs it (a job requeued after writing a result runs again); `lost()` names jobs that ended, or will
    never start, without a result."""

    def __init__(self, jobs: Sequence, grace_s: float = 60.0):
        self.jobs, self.grace_s = list(jobs), grace_s
        self._gone_since: dict[str, float] = {}
        self._states: dict[str, tuple[str, str]] | None = None  # None: squeue did not answer

    def _slurm_jobs(self) -> list:
        from submitit import SlurmJob

        return [job for job in self.jobs if isinstance(job, SlurmJob)]  # local jobs end as processes

    def refresh(self) -> None:
        self._states = queue_states([job.job_id for job in self._slurm_jobs()])

    def pending(self) -> list:
        states = self._states or {}
        return [job for job in self.jobs if not job.done() or states.get(job.job_id, ("",))[0] in ACTIVE]

    def lost(self) -> list[tuple[object, str]]:
        if self._states is None:  # no squeue, or it failed this time: nothing is known to be lost
            return []
        now, lost = time.time(), []
        for job in self._slurm_jobs():
            state, reason = self._states.get(job.job_id, ("GONE", ""))
            if state == "PENDING" and reason in NEVER_STARTS:
                lost.append((job, f"pending for good ({reason}): no node of the partition can run it"))
                continue
            if state in ENDED or state == "GONE":
                since = self._gone_since.setdefault(job.job_id, now)
                if now - since >= self.grace_s and not job.done():  # its result file would have shown by now
                    lost.append((job, f"{state.lower()} without a result"))
            else:
                self._gone_since.pop(job.job_id, None)
        return lost


def wait_for_jobs(jobs: Sequence, poll_s: float, on_poll: Callable[[], None] = lambda: None,
                  grace_s: float = 60.0, tolerate_lost: bool = False) -> list:
    """Until every job is done. A job gone without a result ends the wait with one line naming its log,
    or, with `tolerate_lost` (search workers: the others take over its trial), is logged and left out;
    returns the jobs left out."""
    watch, gone = JobWatch(jobs, grace_s), []
    watch.refresh()
    while watch.pending():
        time.sleep(poll_s)
        on_poll()
        watch.refresh()
        for job, why in watch.lost():
            message = f"job {job.job_id} {why}; its log: {job.paths.stdout}"
            if not tolerate_lost:
                raise TrainingError(f"{message} (the other jobs go on: squeue --me)")
            log.warning("%s; the other jobs go on", message)
            watch.jobs.remove(job)
            gone.append(job)
    return gone
