"""optim/swa: Stochastic Weight Averaging (Izmailov et al. 2018), off or on.

From `start_step`, SWALR anneals the learning rate to `swa_lr` and AveragedModel keeps an equal-weight
average of the weights every `update_every` steps. The trainer evaluates and checkpoints the average.
"""
from __future__ import annotations

import torch
from torch.optim.swa_utils import SWALR, AveragedModel

from midiformer.registry import Registry

SWAS = Registry("optim/swa")


class NoAveraging:
    """optim/swa=off: nothing is averaged."""

    model = None

    def active(self, step: int) -> bool:
        return False

    def after_step(self, step: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class WeightAveraging:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, max_steps: int,
                 start_step: float, swa_lr: float, anneal_steps: int, update_every: int):
        self.start_step = int(start_step * max_steps) if 0 < start_step < 1 else int(start_step)
        self.update_every, self.swa_lr, self.anneal_steps = update_every, swa_lr, max(1, anneal_steps)
        self.source, self.optimizer = model, optimizer
        self.model = AveragedModel(model)
        self.scheduler: SWALR | None = None  # made at start_step: SWALR sets the learning rate when built

    def active(self, step: int) -> bool:
        """Does SWA drive the learning rate at this step (instead of the main schedule)?"""
        return step >= self.start_step

    def _make_scheduler(self) -> SWALR:
        return SWALR(self.optimizer, swa_lr=self.swa_lr, anneal_epochs=self.anneal_steps, anneal_strategy="cos")

    def after_step(self, step: int) -> None:
        if not self.active(step):
            return
        if (step - self.start_step) % self.update_every == 0:
            self.model.update_parameters(self.source)
        if self.scheduler is None:
            self.scheduler = self._make_scheduler()
        self.scheduler.step()

    def state_dict(self) -> dict:
        scheduler = {} if self.scheduler is None else {  # plain values only: weights_only refuses a function
            key: value for key, value in self.scheduler.state_dict().items() if not callable(value)}
        return {"model": self.model.state_dict(), "scheduler": scheduler}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if state["scheduler"]:
            lrs = [group["lr"] for group in self.optimizer.param_groups]
            self.scheduler = self._make_scheduler()
            for group, lr in zip(self.optimizer.param_groups, lrs):  # undo the lr set on construction
                group["lr"] = lr
            self.scheduler.load_state_dict(state["scheduler"])


@SWAS.register("off")
def no_averaging(model, optimizer, max_steps) -> NoAveraging:
    return NoAveraging()


@SWAS.register("on")
def weight_averaging(model, optimizer, max_steps, **options) -> WeightAveraging:
    return WeightAveraging(model, optimizer, max_steps, **options)
