"""hydra/launcher=slurm, =slurm_cpu and =local: what they compose to, the sbatch script submitit makes of
them, and requests refused before sbatch."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO
from tests.scaleout.conftest import ENV, compose_with_hydra

PLUGIN = "hydra_plugins.midiformer_launchers"


def test_slurm_launcher_composes_with_expected_values():
    launcher = compose_with_hydra("hydra/launcher=slurm").hydra.launcher
    assert launcher._target_ == f"{PLUGIN}.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 8, 8)
    assert launcher.cpus_per_task == 8 and launcher.mem_gb == 256 and launcher.timeout_min == 1440
    assert launcher.partition is None and launcher.account is None
    assert launcher.max_num_timeout > 0, "a timed-out job would not be requeued"
    assert 0 < launcher.signal_delay_s < launcher.timeout_min * 60
    assert launcher.additional_parameters.requeue is True


def test_slurm_launcher_knobs_override_on_the_command_line():
    launcher = compose_with_hydra("hydra/launcher=slurm", "hydra.launcher.nodes=4", "hydra.launcher.partition=gpu",
                                  "hydra.launcher.account=music", "hydra.launcher.tasks_per_node=4",
                                  "hydra.launcher.gpus_per_node=4").hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (4, 4, 4)
    assert (launcher.partition, launcher.account) == ("gpu", "music")


def test_local_launcher_composes_with_expected_values():
    launcher = compose_with_hydra("hydra/launcher=local").hydra.launcher
    assert launcher._target_ == f"{PLUGIN}.LocalLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 2, 0)


def test_slurm_cpu_launcher_asks_for_no_gpu_and_a_small_node():
    launcher = compose_with_hydra("hydra/launcher=slurm_cpu").hydra.launcher
    assert launcher._target_ == f"{PLUGIN}.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node, launcher.cpus_per_task) == (1, 1, 0, 1)
    assert launcher.mem_gb <= 8 and launcher.timeout_min <= 120
    assert 0 < launcher.signal_delay_s < launcher.timeout_min * 60
    assert launcher.max_num_timeout > 0 and launcher.additional_parameters.requeue is True


@pytest.mark.slow
def test_cfg_hydra_on_the_command_line_shows_the_slurm_launcher():
    result = subprocess.run([sys.executable, "-m", "midiformer.train", "hydra/launcher=slurm",
                             "hydra.launcher.nodes=2", "--cfg", "hydra"],
                            cwd=REPO, env=ENV, capture_output=True, text=True, check=True)
    launcher = yaml.safe_load(result.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == f"{PLUGIN}.SlurmLauncher"
    assert launcher["nodes"] == 2 and launcher["tasks_per_node"] == launcher["gpus_per_node"] == 8
    assert launcher["max_num_timeout"] > 0 and launcher["signal_delay_s"] == 120


def stand_in_sbatch(tmp_path):
    """(environment, script path): an sbatch that keeps the script it is given and refuses it, and an srun
    so that submitit believes it is on SLURM, first on PATH."""
    bin_dir, script = tmp_path / "bin", tmp_path / "job.sh"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "sbatch: error: not a cluster" >&2\nexit 1\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(stat.S_IRWXU)
    return {**ENV, "PATH": f"{bin_dir}{os.pathsep}{ENV['PATH']}"}, script


@pytest.mark.slow
def test_a_signal_delay_at_or_above_the_time_limit_is_refused_before_sbatch(tmp_path):
    env, script = stand_in_sbatch(tmp_path)
    result = subprocess.run([sys.executable, "-m", "midiformer.train", "--multirun", "hydra/launcher=slurm_cpu",
                             "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=60",
                             f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 2 and not script.exists()
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: hydra.launcher.signal_delay_s=60 must be below hydra.launcher.timeout_min=1")


@pytest.mark.slow
def test_multirun_on_slurm_submits_the_expected_sbatch_script(tmp_path):
    """The whole launcher path up to sbatch (a partition that no sinfo knows: nothing to check it against)."""
    env, script = stand_in_sbatch(tmp_path)
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "midiformer.train", "--multirun", "hydra/launcher=slurm", "hydra.launcher.nodes=2",
         "hydra.launcher.partition=gpu", "hydra.launcher.account=music", "hydra.launcher.timeout_min=90",
         f"hydra.sweep.dir={sweep}"],
        cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "not a cluster" in result.stderr
    flags = {line.split()[1] for line in script.read_text().splitlines() if line.startswith("#SBATCH")}
    assert {"--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=8", "--mem=256GB",
            "--time=90", "--partition=gpu", "--account=music", "--signal=USR2@120", "--requeue",
            f"--output={sweep}/.submitit/%j/%j_0_log.out"} <= flags
    command = script.read_text().splitlines()[-1]
    assert command.startswith("srun ") and "submitit.core._submit" in command  # one task per rank, each runs the job
