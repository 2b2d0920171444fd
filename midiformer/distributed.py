"""Who am I in the job: rank discovery in one place, process-group setup, collective helpers.

Order of discovery: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), then a
submitit job on SLURM, else a single process. Backend nccl on CUDA, gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


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
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return DistEnv(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                       int(os.environ.get("LOCAL_RANK", 0)), "torchrun")
    submitit_env = _submitit_env()
    if submitit_env is not None:
        return submitit_env
    return DistEnv()


def _submitit_env() -> DistEnv | None:
    if "SUBMITIT_EXECUTOR" not in os.environ and "SUBMITIT_FOLDER" not in os.environ:
        return None
    try:
        import submitit
        from submitit.helpers import TorchDistributedEnvironment

        job = submitit.JobEnvironment()
        if job.num_tasks <= 1:
            return DistEnv(source="submitit")
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)  # sets MASTER_ADDR/PORT, RANK...
    except RuntimeError:  # not inside a submitit job after all
        return None
    return DistEnv(job.global_rank, job.num_tasks, job.local_rank, "submitit")


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
