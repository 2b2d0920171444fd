"""trainer.nonfinite_loss: what a step whose training loss is NaN or infinite does to the run.

stop: the first such step is noted on the device (no host sync) and raised, naming it, at the next
host sync (a log step, a validation, a checkpoint): its weights are never validated or saved.
skip: the step must be dropped before its gradients are applied, so it costs one host sync per step.
"""
from __future__ import annotations

import logging

import torch

from midiformer.common import TrainingError

log = logging.getLogger("midiformer.train")


class NonfiniteLosses:
    def __init__(self, policy: str, device: torch.device):
        self.policy = policy
        self._first = torch.full((2,), -1.0, dtype=torch.float64, device=device)  # (step, loss), -1: none yet

    def keep(self, totals: torch.Tensor, step: int) -> bool:
        """Apply this step's gradients? totals: summed nats per field, then the target count."""
        loss = (totals[:-1] / totals[-1]).sum()
        if self.policy == "skip":
            if bool(torch.isfinite(loss)):
                return True
            log.warning("step %d: training loss is %s; step skipped", step, loss.item())
            return False
        first = ~torch.isfinite(loss) & (self._first[0] < 0)
        self._first = torch.where(first, torch.stack([torch.full_like(loss, step), loss]), self._first)
        return True

    def check(self) -> None:
        """Raise for the first non-finite step noted so far (a host sync: call it where one happens anyway)."""
        step, loss = self._first.tolist()
        if step >= 0:
            raise TrainingError(f"step {int(step)}: training loss is {loss}; stopping (trainer.nonfinite_loss=skip "
                                f"drops such steps instead; a lower optim.lr or trainer/precision=fp32 may help)")
