"""What a run folder records about where it came from: git commit, library versions, machine."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "numpy", "hydra-core", "omegaconf", "optuna", "submitit", "music21", "wandb")


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def library_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# CPU features that decide whether bf16 autocast pays on a CPU (bf16 dot products; AMX tile units)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def cpu() -> dict[str, str | list[str] | None]:
    """The CPU's model name and its bf16 features, from /proc/cpuinfo (Linux; None elsewhere)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or None, "bf16_flags": None}
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name"), "bf16_flags": [f for f in BF16_CPU_FLAGS if f in flags]}


def machine() -> dict[str, str | int | dict | None]:
    import os

    import torch

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
