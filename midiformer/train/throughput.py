"""How fast a run trains: events/s, model FLOPs utilisation (MFU), the share of time spent waiting
for data, and the wall-clock budget (trainer.max_time).

MFU follows nanoGPT (and PaLM, appendix B): a training step costs 6N FLOPs per event for the matmuls
(forward and backward) plus 12·L·d·T for attention, with N the weights of every matmul (embedding
tables are lookups, not matmuls), L layers, d = d_model and T the training context. Achieved FLOP/s
over `trainer.peak_flops` is the MFU; left null, the peak is looked up by GPU name (dense bf16/fp16
tensor-core peaks from the vendors' data sheets), and on a CPU or an unknown GPU there is no MFU.
As in nanoGPT, an fp32 run is measured against the same bf16 peak: its MFU shows what it leaves.
"""
from __future__ import annotations

import os
import re
import time

import torch
from torch import nn

from midiformer.common import ConfigError

# Dense (no sparsity) bf16 / fp16 tensor-core peaks, FLOP/s. Matched in order against
# torch.cuda.get_device_name(): the more specific names come first.
PEAK_FLOPS = (
    ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12),
    ("B200", 2250e12), ("B100", 1750e12),
    ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12),
    ("A6000", 155e12), ("A40", 150e12), ("A30", 165e12), ("A10G", 70e12), ("A10", 125e12),
    ("RTX 4090", 165e12), ("RTX 3090", 71e12), ("V100", 125e12), ("T4", 65e12),
)


def flops_per_event(model: nn.Module, n_layer: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per event (forward + backward): 6N + 12·L·d·T, N = weights of every nn.Linear."""
    n_matmul = sum(p.numel() for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters())
    return 6.0 * n_matmul + 12.0 * n_layer * d_model * seq_len


def peak_flops(configured: float | None, device: torch.device) -> float | None:
    """trainer.peak_flops if set, else the known peak of this CUDA device's name, else None."""
    if configured:
        return float(configured)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS if key in name), None)


def parse_max_time(value) -> float | None:
    """trainer.max_time as seconds: null, a number of seconds, or "[DD:]HH:MM:SS" (Lightning's form)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    text = str(value).strip()
    match = re.fullmatch(r"(?:(\d+):)?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)", text)
    if not match:
        raise ConfigError(f"trainer.max_time={value}: expected HH:MM:SS, DD:HH:MM:SS or seconds > 0 (null = no limit)")
    days, hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ConfigError(f"trainer.max_time={value}: must be longer than zero (null = no limit)")
    return total


def process_started_at() -> float | None:
    """Unix time at which this process started (Linux: /proc), for start-up latency; None elsewhere."""
    try:
        ticks = int(open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class Throughput:
    """Wall time of training steps between host syncs (log steps), and the part of it spent waiting
    for the next batch. Time outside steps (validation, checkpoints) is left out with pause()."""

    def __init__(self, events_per_step: int, flops_per_event: float, peak: float | None):
        self.events_per_step, self.flops_per_event, self.peak = events_per_step, flops_per_event, peak
        self.total_steps, self.total_seconds, self.total_wait = 0, 0.0, 0.0
        self._steps, self._seconds, self._wait = 0, 0.0, 0.0
        self._since: float | None = None

    def start(self) -> None:
        self._since = time.perf_counter()

    def pause(self) -> None:
        if self._since is not None:
            self._seconds += time.perf_counter() - self._since
            self._since = None

    def step_done(self, data_wait: float) -> None:
        self._steps += 1
        self._wait += data_wait

    def mean_step_seconds(self) -> float | None:
        """Over the last interval (or the run so far): what the next step will probably take."""
        if self._steps and self._seconds:
            return self._seconds / self._steps
        return self.total_seconds / self.total_steps if self.total_steps else None

    def interval(self) -> dict[str, float]:
        """events/s, MFU and data-wait fraction since the last call; call it after a host sync, so that
        the device has finished the steps it counts."""
        running = self._since is not None
        self.pause()
        report = self._report(self._steps, self._seconds, self._wait)
        self.total_steps += self._steps
        self.total_seconds += self._seconds
        self.total_wait += self._wait
        self._steps, self._seconds, self._wait = 0, 0.0, 0.0
        if running:
            self.start()
        return report

    def totals(self) -> dict[str, float | None]:
        self.interval()
        return self._report(self.total_steps, self.total_seconds, self.total_wait)

    def _report(self, steps: int, seconds: float, wait: float) -> dict[str, float | None]:
        if not steps or seconds <= 0:
            return {}
        events_per_s = steps * self.events_per_step / seconds
        return {"events_per_s": events_per_s,
                "mfu": events_per_s * self.flops_per_event / self.peak if self.peak else None,
                "data_wait_fraction": min(1.0, wait / seconds)}
