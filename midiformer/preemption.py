"""Stop cleanly on SIGUSR2 (SLURM's warning before preemption or time-out, as submitit asks for it)
or SIGTERM: the trainer finishes its step, writes checkpoints/last.pt, then hands over.

Handing over: inside a submitit job, submitit's own handler was installed first; it requeues the job,
and the requeued job resumes from last.pt by itself. Elsewhere the process exits with 128 + signal.
"""
from __future__ import annotations

import signal
import sys
from typing import Callable

import torch

SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


class StopSignals:
    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        for signum in SIGNALS:
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
        self.signum = signum

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum else None

    def requested(self, all_reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
                  device: torch.device | str = "cpu") -> bool:
        """Has any rank been signalled? Every rank must agree, or the collectives would hang."""
        flag = torch.tensor([1.0 if self.signum else 0.0], device=device)
        return bool(all_reduce(flag).item() > 0)

    def hand_over(self) -> None:
        signum = self.signum or signal.SIGTERM
        previous = self._previous.get(signum)
        self.__exit__()
        if callable(previous):
            previous(signum, None)
        sys.exit(128 + signum)
