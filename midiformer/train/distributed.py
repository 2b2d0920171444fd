"""Who am I in the job: rank discovery in one place, process-group setup, collective helpers.

Order of discovery: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), then a
task of a submitit job (SLURM, or submitit's local executor), else a single process. Backend nccl on
CUDA, gloo on CPU. Every helper is a no-op in a single process, so the trainer calls them unguarded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from midiformer.common import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    source: str = "single"  # torchrun | submitit | single

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def discover() -> DistEnv:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun (or anything that sets its variables)
        return DistEnv(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                       int(os.environ.get("LOCAL_RANK", 0)), "torchrun")
    if os.environ.get("SUBMITIT_EXECUTOR"):  # set by submitit in every task of a job it launched
        return _submitit_env()
    return DistEnv()


def _submitit_env() -> DistEnv:
    """This task's place in a submitit job (SLURM variables, or the local executor's).

    With hydra/launcher=slurm|local every task runs the whole Hydra job, so each must find its rank
    here. Exporting MASTER_ADDR (the job's first node), MASTER_PORT (from the job id, the same on all
    tasks; a MASTER_PORT already set wins), RANK and WORLD_SIZE lets torch's env:// rendezvous find
    the others. CUDA_VISIBLE_DEVICES is left alone: pick_device uses the local rank.
    """
    from submitit.helpers import TorchDistributedEnvironment

    job = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return DistEnv(job.rank, job.world_size, job.local_rank, "submitit")


def cpu_threads(configured: int | None) -> int | None:
    """trainer.num_threads when set; else the cores SLURM gave this task (SLURM_CPUS_PER_TASK), since
    PyTorch would take every core of the node in every rank on it; else None (PyTorch's default)."""
    if configured:
        return configured
    given = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(given) if given.isdigit() and int(given) > 0 else None


def check_batch_split(cfg, world_size: int) -> None:
    """Refuse, before any work, global batches the ranks cannot share evenly (one line naming the option).

    data.batch_size is global: each of the optim.grad_accum_steps micro-batches is split over the ranks.
    """
    accum, batch_size = cfg.optim.grad_accum_steps, cfg.data.batch_size
    if batch_size % (accum * world_size):
        raise ConfigError(f"data.batch_size={batch_size} must be a multiple of optim.grad_accum_steps={accum} "
                          f"x the world size {world_size} (the batch is global: each rank takes its share)")
    if cfg.data.eval_batch_size % world_size:
        raise ConfigError(f"data.eval_batch_size={cfg.data.eval_batch_size} must be a multiple of the world "
                          f"size {world_size} (the batch is global: each rank takes its share)")


def setup(env: DistEnv, device_type: str) -> None:
    if env.enabled and not torch_dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        torch_dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)


def teardown() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if torch_dist.is_initialized():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if torch_dist.is_initialized():
        torch_dist.barrier()


def broadcast_object(value):
    """Rank 0's value on every rank."""
    if not torch_dist.is_initialized():
        return value
    holder = [value]
    torch_dist.broadcast_object_list(holder, src=0)
    return holder[0]
