"""The batch source of the training loop: batch i is make_batch(i), built ahead on a thread.

make_batch is a pure function of the micro-batch index (dataset.train_batch of (seed, step)), so a
prefetched batch is the batch the loop would have built itself, and a resumed run starts the source
at its step: resume stays bitwise whatever the prefetch depth. The thread builds the next `depth`
batches while the device computes (numpy slicing and copies release the GIL), pins their memory when
the device is a GPU, and the loop copies them with non_blocking=True: on CUDA the copy overlaps the
step before it. The time the loop spends blocked on the queue is the data wait the trainer reports.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any, Callable

import torch


def apply(function: Callable[[torch.Tensor], torch.Tensor], batch: Any) -> Any:
    """function on every tensor of a batch: a tensor, or a tuple / list / dict / dataclass of them (a
    batch with per-window state, like the grammar's SongStart)."""
    if isinstance(batch, torch.Tensor):
        return function(batch)
    if isinstance(batch, dict):
        return {key: apply(function, value) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(apply(function, value) for value in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: apply(function, getattr(batch, f.name))
                                             for f in dataclasses.fields(batch) if f.init})
    return batch


def to_device(batch: Any, device: torch.device, non_blocking: bool) -> Any:
    return apply(lambda tensor: tensor.to(device, non_blocking=non_blocking), batch)


def pin(batch: Any) -> Any:
    return apply(torch.Tensor.pin_memory, batch)


class BatchSource:
    """`next()` gives make_batch(start), make_batch(start + 1), ... on `device`.

    depth 0 builds each batch on the caller's thread when asked (the synchronous path); depth k keeps
    up to k batches built ahead by one daemon thread. An error in make_batch comes out of next() on
    the caller's thread, with its traceback. close() stops the thread (also on garbage collection).
    """

    def __init__(self, make_batch: Callable[[int], Any], start: int, device: torch.device, depth: int = 2):
        self._stop, self._queue = threading.Event(), None
        if depth < 0:
            raise ValueError(f"prefetch depth {depth} must be >= 0")
        self.make_batch, self.index, self.device, self.depth = make_batch, start, device, depth
        self.pin = device.type == "cuda" and torch.cuda.is_available()
        self.wait_seconds = 0.0  # time next() spent blocked, since the last take_wait()
        if depth:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._fill, args=(start,), name="midiformer-prefetch", daemon=True)
            self._thread.start()

    def _build(self, index: int) -> Any:
        batch = self.make_batch(index)
        return pin(batch) if self.pin else batch

    def _fill(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                item = (index, self._build(index), None)
            except BaseException as error:  # handed to the loop, which raises it
                item = (index, None, error)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return
            index += 1

    def next(self) -> Any:
        started = time.perf_counter()
        if self._queue is None:
            batch = self._build(self.index)
        else:
            index, batch, error = self._queue.get()
            if error is not None:
                self.close()
                raise error
            assert index == self.index, (index, self.index)
        self.index += 1
        batch = to_device(batch, self.device, non_blocking=self.pin)
        self.wait_seconds += time.perf_counter() - started
        return batch

    def take_wait(self) -> float:
        """Seconds spent waiting for batches since the last call."""
        wait, self.wait_seconds = self.wait_seconds, 0.0
        return wait

    def close(self) -> None:
        self._stop.set()
        if self._queue is not None:
            while True:  # unblock a put() in flight
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=5)

    def __del__(self):
        self.close()
