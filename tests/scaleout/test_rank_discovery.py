"""Rank discovery from each launcher's environment, and global batches the ranks cannot share."""
from __future__ import annotations

import os
import socket

import pytest

from midiformer.common import ConfigError
from midiformer.train import distributed
from midiformer.train.loop import train

# what discovery reads or exports; cleared first so the machine's own environment cannot leak in
VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
             "SUBMITIT_EXECUTOR", "SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_JOB_NUM_NODES", "SLURM_NODEID",
             "SLURM_JOB_NODELIST", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")


@pytest.fixture
def environ(monkeypatch):
    """environ(**values): exactly these of VARIABLES set; all of VARIABLES as they were after the test."""
    for name in VARIABLES:
        monkeypatch.setenv(name, "")  # recorded, so that what discovery exports is undone too

    def set_only(**values):
        for name in VARIABLES:
            os.environ.pop(name, None)
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))

    set_only()
    return set_only


def slurm_task(environ, procid: int, localid: int, nodeid: int, **more):
    """Task `procid` of a 2-node x 8-task SLURM job started by submitit."""
    environ(SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID=4242, SLURM_NTASKS=16, SLURM_JOB_NUM_NODES=2,
            SLURM_JOB_NODELIST="gpu[07-08]", SLURM_NODEID=nodeid, SLURM_PROCID=procid, SLURM_LOCALID=localid, **more)
    return distributed.discover()


def test_a_plain_process_is_a_single_rank(environ):
    assert distributed.discover() == distributed.DistEnv(0, 1, 0, "single")


def test_torchrun_variables_come_first(environ):
    environ(RANK=3, WORLD_SIZE=4, LOCAL_RANK=1, SUBMITIT_EXECUTOR="slurm")
    assert distributed.discover() == distributed.DistEnv(3, 4, 1, "torchrun")


def test_a_slurm_task_of_submitit_finds_its_rank_and_the_rendezvous(environ):
    assert slurm_task(environ, procid=13, localid=5, nodeid=1) == distributed.DistEnv(13, 16, 5, "submitit")
    port = os.environ["MASTER_PORT"]
    assert (os.environ["MASTER_ADDR"], os.environ["RANK"], os.environ["WORLD_SIZE"]) == ("gpu07", "13", "16")
    # another task of the same job, in its own process: the same rendezvous port, derived from the job id
    assert slurm_task(environ, procid=2, localid=2, nodeid=0).rank == 2
    assert os.environ["MASTER_PORT"] == port and 20000 <= int(port) <= 60000


def test_a_master_port_set_by_the_user_is_kept(environ):
    slurm_task(environ, procid=0, localid=0, nodeid=0, MASTER_PORT=29555)
    assert os.environ["MASTER_PORT"] == "29555"


def test_a_task_of_the_local_executor_finds_its_rank(environ):
    environ(SUBMITIT_EXECUTOR="local", SUBMITIT_LOCAL_JOB_ID=777, SUBMITIT_LOCAL_NTASKS=2, SUBMITIT_LOCAL_NODEID=0,
            SUBMITIT_LOCAL_JOB_NUM_NODES=1, SUBMITIT_LOCAL_GLOBALID=1, SUBMITIT_LOCAL_LOCALID=1)
    assert distributed.discover() == distributed.DistEnv(1, 2, 1, "submitit")
    assert os.environ["MASTER_ADDR"] == socket.gethostname()


@pytest.mark.parametrize("world_size, overrides, option", [
    (4, ["data.batch_size=6"], "data.batch_size=6"),
    (4, ["data.batch_size=8", "optim.grad_accum_steps=4"], "optim.grad_accum_steps=4"),
    (2, ["data.eval_batch_size=5"], "data.eval_batch_size=5"),
])
def test_a_global_batch_the_ranks_cannot_share_is_refused_before_any_work(environ, tiny_cfg, tmp_path, world_size,
                                                                          overrides, option):
    environ(RANK=0, WORLD_SIZE=world_size, LOCAL_RANK=0)  # rank 0 of a torchrun job, before its rendezvous
    with pytest.raises(ConfigError) as error:
        train(tiny_cfg(*overrides), tmp_path / "run")
    message = str(error.value)
    assert option in message and f"world size {world_size}" in message and "\n" not in message
    assert not (tmp_path / "run").exists()
