"""Requests refused before sbatch (against a partition's nodes as sinfo describes them), and each rank's
torch threads from the CPUs SLURM gave its task. No cluster needed: the nodes are given."""
from __future__ import annotations

import pytest

from midiformer.common import ConfigError
from midiformer.sweeps.slurm import Node, Request, check_request
from midiformer.train import distributed

CPU_NODES = [Node("n1", cpus=2, mem_mb=19284, gpus=0), Node("n2", cpus=2, mem_mb=19284, gpus=0)]
GPU_NODES = [Node("g1", cpus=64, mem_mb=512_000, gpus=8)]


def refused(request: Request, nodes) -> str:
    with pytest.raises(ConfigError) as error:
        check_request(request, nodes)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_request_that_fits_passes():
    check_request(Request("hydra.launcher.", nodes=2, tasks_per_node=1, cpus_per_task=1, gpus_per_node=0,
                          mem_gb=4), CPU_NODES)
    check_request(Request("hydra.launcher.", nodes=1, tasks_per_node=8, cpus_per_task=8, gpus_per_node=8,
                          mem_gb=256), GPU_NODES)


def test_gpus_on_a_partition_without_gpus_are_refused():
    message = refused(Request("hydra.launcher.", gpus_per_node=8, partition="debug"), CPU_NODES)
    assert message.startswith("hydra.launcher.gpus_per_node=8: partition debug has no GPUs")
    assert "slurm_cpu" in message


@pytest.mark.parametrize("request_, option", [
    (Request("hydra.launcher.", tasks_per_node=8, cpus_per_task=8, gpus_per_node=0), "cpus_per_task=8"),
    (Request("hydra.launcher.", nodes=3, gpus_per_node=0), "nodes=3"),
    (Request("hpo.executor.", cpus_per_task=1, mem_gb=256, gpus_per_node=0), "mem_gb=256"),
])
def test_a_request_no_node_can_hold_is_refused_instead_of_pending_forever(request_, option):
    message = refused(request_, CPU_NODES)
    assert option in message and "wait forever" in message and "2 CPUs, 18 GB" in message
    assert message.startswith(request_.prefix)


@pytest.mark.parametrize("delay", [60, 90])
def test_a_signal_delay_at_or_above_the_time_limit_is_refused(delay):
    message = refused(Request("hpo.executor.", timeout_min=1, signal_delay_s=delay), CPU_NODES)
    assert message.startswith(f"hpo.executor.signal_delay_s={delay} must be below hpo.executor.timeout_min=1")


def test_without_sinfo_only_the_time_limit_is_checked():
    check_request(Request("hydra.launcher.", gpus_per_node=8, cpus_per_task=99), nodes=[])


@pytest.mark.parametrize("configured, given, threads", [(None, "3", 3), (2, "3", 2), (None, None, None),
                                                        (None, "", None), (None, "2(x2)", None)])
def test_threads_come_from_the_cpus_of_the_task_unless_set(monkeypatch, configured, given, threads):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    if given is not None:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", given)
    assert distributed.cpu_threads(configured) == threads
