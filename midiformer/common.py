"""What every app shares: the error types, one-line exits, device choice and option checks.

Apps (train, evaluate, generate, hpo, prepare, report) import from here, never from each other.
"""
from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    import torch

from midiformer.codec.midi import MidiError

LN2 = math.log(2)  # nats -> bits
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # the Hydra configs of every app


# the signals a run stops cleanly on (train/preemption.py), in order of precedence: a requeue (SIGUSR2, a
# time limit) beats a plain stop (SIGTERM); SLURM sends them to every process of a job step
STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)

# what a rank other than 0 runs its Hydra job with: no .hydra/ folder, its log to stdout (torchrun's or
# submitit's per-task stream), so rank 0 alone writes the run folder
QUIET_RANK_OVERRIDES = ["hydra.output_subdir=null", "hydra/job_logging=stdout"]


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the option."""


class CheckpointError(ValueError):
    """A file that is not a midiformer checkpoint (or does not fit the run); one line naming it."""


class TrainingError(RuntimeError):
    """The run cannot go on (a non-finite loss); the message is one line naming the step."""


USER_ERRORS = (ConfigError, CheckpointError, TrainingError, FileNotFoundError, MidiError)


def dev_corpus(repo: Path) -> Path:
    """The team's development corpus, shared/data/midi_dev: $MIDIFORMER_DEV_DATA, else beside the checkout
    `repo` or a folder above it (a worktree), else /work's (a clone elsewhere, as CI's); where none exists,
    the path beside the checkout (callers say it is missing)."""
    if os.environ.get("MIDIFORMER_DEV_DATA"):
        return Path(os.environ["MIDIFORMER_DEV_DATA"]).resolve()
    for folder in (*Path(repo).resolve().parents, Path("/work")):
        if (folder / "shared" / "data" / "midi_dev").is_dir():
            return (folder / "shared" / "data" / "midi_dev").resolve()
    return Path(repo).resolve().parent / "shared" / "data" / "midi_dev"


def exit_on_user_error(function: Callable[..., Any], *args: Any) -> Any:
    """Run `function`; a bad option, file or checkpoint ends the program with one line and status 2."""
    try:
        return function(*args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """`auto` takes the GPU of this local rank when CUDA is visible, else the CPU."""
    import torch  # here, not at the top: prepare's encoding workers import this module and need no torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        index = local_rank % torch.cuda.device_count()  # a cluster may show each task only its own GPU
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


# --- option checks: (key, is_valid, what is allowed) triples, checked by check_values -------------

def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def nonnegative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def positive(value: Any) -> bool:
    return is_number(value) and value > 0


def nonnegative(value: Any) -> bool:
    return is_number(value) and value >= 0


Check = tuple[str, Callable[[Any], bool], str]


def check_values(cfg: DictConfig, checks: list[Check]) -> None:
    """Each (key, is_valid, what is allowed) of `checks` against cfg; the first failure is a ConfigError."""
    for key, is_valid, allowed in checks:
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except Exception as error:  # a missing mandatory value (???) or a broken interpolation
            raise ConfigError(f"{key}: {str(error).splitlines()[0]}") from None
        if not is_valid(value):
            raise ConfigError(f"{key}={value!r} must be {allowed}")
