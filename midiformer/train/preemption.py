"""Stop cleanly on SIGUSR2 or SIGTERM: the trainer finishes its step, writes checkpoints/last.pt, hands over.

Who sends what: SLURM sends SIGUSR2 `signal_delay_s` before a job's time limit (submitit asks for it
with --signal=USR2@N), and at preemption SIGTERM (or SIGUSR2 with PreemptParameters=send_user_signal);
torchrun's agent, `scancel`, `docker stop` and `kill` send SIGTERM.

Handing over: a submitit task installed its own handlers before ours (submitit/core/job_environment.py,
`_handle_signals`): on SIGUSR2, `SignalHandler.checkpoint_and_try_requeue` makes rank 0 pickle the job
again and requeue it (`scontrol requeue`; the local executor restarts it), then exit; on SIGTERM it only
logs. We replace those handlers while training, so a signal never cuts a step in half, and call the
saved one once the checkpoint is on disk: the requeued job starts the same Hydra job in the same run
folder and resumes from last.pt by itself (trainer.resume=auto). Elsewhere the process exits 128 + signal.
"""
from __future__ import annotations

import signal
import sys
from typing import Callable, NoReturn

import torch

from midiformer.common import STOP_SIGNALS


class StopSignals:
    def __init__(self):
        self.received: set[int] = set()  # signals caught on this rank
        self.signum: int | None = None  # the signal all ranks agreed on (see requested)
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        for signum in STOP_SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def __exit__(self, *exc) -> bool:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False

    def _handle(self, signum, frame) -> None:
        self.received.add(signum)  # only note it: the step in flight finishes first

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum else None

    def requested(self, all_reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
                  device: torch.device | str = "cpu") -> bool:
        """Has any rank been signalled? Every rank must agree, or the collectives would hang; and on
        which signal, so that rank 0 (the one submitit lets requeue) knows of a SIGUSR2 sent to rank 3."""
        flags = all_reduce(torch.tensor([float(s in self.received) for s in STOP_SIGNALS], device=device))
        self.signum = next((s for s, flag in zip(STOP_SIGNALS, flags.tolist()) if flag > 0), None)
        return self.signum is not None

    def hand_over(self, barrier: Callable[[], None] = lambda: None) -> NoReturn:
        """Call the handler that was there before ours (submitit's), then exit with 128 + signal.

        Under submitit, rank 0's handler requeues the job and exits; the barrier keeps the other ranks
        until it has, since a task that ends first may bring the whole job step down with it.
        """
        signum = self.signum or signal.SIGTERM
        previous = self._previous.get(signum)
        self.__exit__()
        exit_code = 128 + signum
        try:
            if callable(previous):
                previous(signum, None)
        except SystemExit as handler_exit:  # submitit leaves with sys.exit once the job is requeued
            exit_code = handler_exit.code
        finally:
            barrier()
        sys.exit(exit_code)


class StopVote:
    """Should the run stop (a signal on any rank, or any rank's time budget)? Every rank must agree, or
    the collectives would hang. One process decides at once, on the host. Several all-reduce their
    flags every step and read the ones of the step before: that all-reduce has finished by then, so the
    read never waits for the device, and a stop comes one step after it was asked (lag = 1)."""

    def __init__(self, signals: StopSignals, enabled: bool, device: torch.device | str,
                 all_reduce: Callable[[torch.Tensor], torch.Tensor]):
        self.signals, self.enabled, self.device, self.all_reduce = signals, enabled, device, all_reduce
        self.lag = 1 if enabled else 0
        self._pending: torch.Tensor | None = None
        # a plain host-to-GPU copy waits for the whole stream: the flags go through two pinned buffers
        # in turn (a buffer is reused two calls later, after the read that waited for its copy)
        pinned = torch.device(device).type == "cuda"
        self._buffers = [torch.zeros(len(STOP_SIGNALS) + 1, pin_memory=pinned) for _ in range(2)]
        self._calls = 0

    def __call__(self, time_up: bool) -> tuple[bool, bool]:
        flags = [float(s in self.signals.received) for s in STOP_SIGNALS] + [float(time_up)]
        if self.enabled:
            buffer = self._buffers[self._calls % 2]
            self._calls += 1
            buffer.copy_(torch.tensor(flags))
            sent = self.all_reduce(buffer.to(self.device, non_blocking=True))
            agreed, self._pending = (self._pending.tolist() if self._pending is not None else None), sent
            if agreed is None:
                return False, False
            flags = agreed
        self.signals.signum = next((s for s, flag in zip(STOP_SIGNALS, flags) if flag > 0), None)
        return self.signals.signum is not None, flags[-1] > 0
