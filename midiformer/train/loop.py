"""python -m midiformer.train — train a MidiGPT; the run folder is Hydra's run (or sweep job) folder.

    python -m midiformer.train model/norm=scalenorm trainer.max_steps=500
    torchrun --nproc_per_node=2 -m midiformer.train data.batch_size=32
    python -m midiformer.train --multirun model/norm=layernorm,scalenorm seed=0,1,2

Every rank computes; rank 0 writes (config, metrics, TensorBoard, W&B, checkpoints). A run started
again in the same folder resumes from checkpoints/last.pt, bitwise as if it had never stopped.

The data path (docs/scale.md): batches are built ahead on a thread (prefetch.BatchSource) from the
same pure function of (seed, step); the losses of a step stay on the device and the host reads them
only at log steps, validations and checkpoints; stopping (a signal, trainer.max_time) is agreed by
all ranks one step late so that asking never stalls the device.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Callable

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from midiformer import provenance
from midiformer.codec import events
from midiformer.codec.grammar import SongStart
from midiformer.common import CONF_DIR, LN2, ConfigError, exit_on_user_error, pick_device
from midiformer.data.augment import AUGMENTS
from midiformer.data.dataset import eval_batches, eval_window_count, train_batch
from midiformer.data.store import Store, prepare_store
from midiformer.generate.during_training import sample_during_training
from midiformer.model import LIKELIHOODS, MidiGPT, loss_from, masked_field_losses
from midiformer.train import distributed
from midiformer.train.checkpoint import (
    init_weights_from,
    load_checkpoint,
    restore_trainer_state,
    save_checkpoint,
    trainer_state,
)
from midiformer.train.config import validate_config
from midiformer.train.metrics import (
    MetricSinks,
    bits_report,
    evaluate_model,
    unigram_report,
)
from midiformer.train.nonfinite import NonfiniteLosses
from midiformer.train.optim import build_optimizer, build_scheduler
from midiformer.train.precision import PRECISIONS
from midiformer.train.preemption import StopSignals, StopVote
from midiformer.train.prefetch import BatchSource
from midiformer.train.summary import write_summary
from midiformer.train.swa import SWAS
from midiformer.train.throughput import Throughput, flops_per_event, parse_max_time, peak_flops

log = logging.getLogger("midiformer.train")


class StopRun(Exception):
    """Raised by an `on_validation` callback to end the run early (a search pruning a trial): the trainer
    writes last.pt and summary.json (status "stopped"), then raises it again to the caller of train()."""


def dropout_seed(seed: int, step: int, micro_batch: int, rank: int) -> int:
    """The torch seed of one forward pass: dropout masks differ between ranks (one shared stream would
    give every rank the same masks) and depend on nothing but (seed, step, micro-batch, rank), so a
    resumed run draws exactly the masks the uninterrupted one drew."""
    return int(np.random.SeedSequence([seed, step, micro_batch, rank]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """One training run: built from the config, then `fit()`; its state is what a checkpoint holds."""

    def __init__(self, cfg: DictConfig, run_dir: Path, env: distributed.DistEnv, device: torch.device):
        self.cfg, self.run_dir, self.env, self.device = cfg, Path(run_dir), env, device
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.git_commit = provenance.git_commit()  # the code this session runs: a commit made meanwhile is not it
        seed_everything(cfg.seed)
        if threads := distributed.cpu_threads(cfg.trainer.num_threads):
            torch.set_num_threads(threads)
        if cfg.trainer.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)

        self.store = self._open_store()
        # memory maps and per-song offsets: nothing here reads a split (the unigram baseline comes from
        # the store's field counts)
        self.train_events, self.train_offsets = self.store.events("train"), self.store.offsets("train")
        self.val_events = self.store.events("val")
        if len(self.val_events) < 2:  # no target to score: every validation would report 0.0 bits
            raise ConfigError(f"data.splits={dict(cfg.data.splits)}: the validation split of {self.store.path} "
                              f"holds {len(self.val_events)} rows; give it a share, or more files")
        self.augment = AUGMENTS.build(cfg.data.augment)

        self.model = MidiGPT(cfg.model).to(device)
        self.likelihood = LIKELIHOODS.build(cfg.model.likelihood)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.trainer.max_steps)
        self.precision = PRECISIONS.build(cfg.trainer.precision, device_type=device.type)
        self.swa = SWAS.build(cfg.optim.swa, model=self.model, optimizer=self.optimizer,
                              max_steps=cfg.trainer.max_steps)
        self.step, self.best_val, self.elapsed, self.skipped_steps = 0, math.inf, 0.0, 0
        if not self._resume() and cfg.trainer.init_from:
            init_weights_from(self.model, cfg.trainer.init_from, cfg.model, map_location=device)
            if env.is_main:
                log.info("starting from the weights of %s", cfg.trainer.init_from)

        # DDP first, then compile: dynamo's DDPOptimizer splits the graph at DDP's gradient buckets, so
        # the all-reduces overlap the backward pass (compiling inside DDP would leave one bucket at the end)
        ddp_model = (torch.nn.parallel.DistributedDataParallel(self.model, device_ids=[device.index] if
                                                               device.type == "cuda" else None)
                     if env.enabled else self.model)
        self.train_model = torch.compile(ddp_model) if cfg.trainer.compile else ddp_model
        self.batches: BatchSource | None = None  # opened by fit() at the step it resumes from
        self.nonfinite = NonfiniteLosses(cfg.trainer.nonfinite_loss, device)

    @property
    def scaler(self) -> torch.amp.GradScaler:  # a checkpoint part (checkpoint.COMPONENTS)
        return self.precision.scaler

    # --- setup ----------------------------------------------------------------------------------

    def _open_store(self) -> Store:
        # rank 0 finds, checks and (if need be) prepares the store; the others take its path, so that a
        # corpus of a million files is walked once per job, not once per rank
        path = prepare_store(self.cfg.data) if self.env.is_main else None
        return Store(distributed.broadcast_object(str(path) if path is not None else None))

    def make_batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor, SongStart]:
        """Micro-batch `index` (step * grad_accum_steps + micro) of this rank: (inputs, masked targets, the
        song state before each window), built on the CPU (the prefetch thread), a pure function of (seed, index)."""
        cfg, accum = self.cfg, self.cfg.optim.grad_accum_steps
        batch = train_batch(self.train_events, self.train_offsets, index, seed=cfg.seed,
                            batch_size=cfg.data.batch_size // accum, seq_len=cfg.data.seq_len,
                            augment=self.augment, rank=self.env.rank, world_size=self.env.world_size)
        return batch.to("cpu")  # inputs and masked targets made here, off the loop's thread

    def open_batches(self) -> BatchSource:
        start = self.step * self.cfg.optim.grad_accum_steps
        return BatchSource(self.make_batch, start, self.device, depth=self.cfg.trainer.prefetch)

    def _resume(self) -> bool:
        """Continue from checkpoints/last.pt (resume=auto, when it exists) or a given checkpoint. A run
        that resumes its own checkpoint ignores trainer.init_from: a requeued fine-tuning run goes on."""
        choice = self.cfg.trainer.resume
        path = self.ckpt_dir / "last.pt" if choice == "auto" else None if choice == "never" else Path(choice)
        # rank 0 decides, so that no rank starts afresh while the others resume (a lagging shared disk)
        if path is None or (choice == "auto" and not distributed.broadcast_object(path.exists())):
            return False
        restore_trainer_state(self, load_checkpoint(path, map_location=self.device), path)
        if self.env.is_main:
            log.info("resuming from %s at step %d", path, self.step)
        return True

    # --- one optimizer step ---------------------------------------------------------------------

    def train_step(self) -> torch.Tensor | None:
        """One optimizer step. Returns the summed nats per field and the target count of the step, all
        ranks together, on the device (step_metrics reads them at log steps), or None if it was skipped."""
        cfg, accum = self.cfg, self.cfg.optim.grad_accum_steps
        if self.batches is None:
            self.batches = self.open_batches()
        totals = torch.zeros(len(events.FIELDS) + 1, dtype=torch.float64, device=self.device)
        for micro in range(accum):
            inputs, targets, start = self.batches.next()
            masks = self.likelihood(inputs, targets, start)
            torch.manual_seed(dropout_seed(cfg.seed, self.step, micro, self.env.rank))
            sync = micro == accum - 1 or not self.env.enabled
            with self.precision.autocast(), (contextlib.nullcontext() if sync else self.train_model.no_sync()):
                logits = self.train_model(inputs, targets, start.ticks, start.counts)
                nats, n_events = masked_field_losses(logits, targets, masks)
                loss = loss_from(nats, n_events) / accum
            self.precision.scaler.scale(loss).backward()
            totals += torch.stack([*(nats[f].detach().double() for f in events.FIELDS), n_events.double()])
        totals = distributed.all_reduce_sum(totals)
        if not self.nonfinite.keep(totals, self.step):
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            return None
        self._apply_gradients()
        return totals

    def step_metrics(self, totals: torch.Tensor | None) -> dict[str, float]:
        """The training loss of a step from its device totals: the host sync of a log step."""
        if totals is None:
            return {}
        field_loss = dict(zip(events.FIELDS, (totals[:-1] / totals[-1]).tolist()))
        train_loss = sum(field_loss.values())
        return {"train/loss": train_loss, "train/bits_per_event": train_loss / LN2,
                **{f"train/loss/{f}": v for f, v in field_loss.items()},
                "lr": self.optimizer.param_groups[0]["lr"]}

    def _apply_gradients(self) -> None:
        scaler = self.precision.scaler
        if self.cfg.optim.grad_clip > 0:
            scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        scaler.step(self.optimizer)
        scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.swa.active(self.step):
            self.swa.after_step(self.step)
        else:
            self.scheduler.step()

    # --- validation and checkpoints -------------------------------------------------------------

    def validate(self, val_batches: int | None = None) -> dict[str, float]:
        """Bits per event on the validation split (trainer.val_batches batches of it, or `val_batches`)."""
        split_rows, val_batches = len(self.val_events), val_batches or self.cfg.trainer.val_batches
        report = {}
        models = {"val/": self.model}
        if self.swa.model is not None and int(self.swa.model.n_averaged) > 0:
            models["val/swa/"] = self.swa.model.module
        for prefix, model in models.items():
            batches = eval_batches(self.val_events, self.cfg.data.eval_batch_size, self.cfg.data.seq_len,
                                   offsets=self.store.offsets("val"), rank=self.env.rank,
                                   world_size=self.env.world_size)
            if val_batches:
                batches = (b for _, b in zip(range(val_batches), batches))
            nats, n_events, n_notes = evaluate_model(model, batches, device=self.device, precision=self.precision,
                                                     likelihood=self.likelihood, all_reduce=distributed.all_reduce_sum)
            seconds = self.store.manifest["splits"]["val"]["seconds"] if n_events == split_rows - 1 else None
            report.update(bits_report(nats, n_events, n_notes, seconds, prefix=prefix))
        return report

    def save(self, name: str) -> None:
        self.nonfinite.check()
        if self.env.is_main:
            # the training split's field counts travel with the weights: evaluate's unigram baseline on
            # any folder is "what the model was told", even where the training store is not at hand
            train_counts = {f: torch.from_numpy(c) for f, c in self.store.field_counts("train").items()}
            save_checkpoint(trainer_state(self, train_field_counts=train_counts), self.ckpt_dir / name)

    # --- the loop -------------------------------------------------------------------------------

    def fit(self, on_validation: Callable[[int, dict[str, float]], None] | None = None) -> float:
        """Train to trainer.max_steps (or trainer.max_time). `on_validation(step, metrics)` is called on
        every rank after each validation (hpo reports to Optuna there) and may raise StopRun."""
        cfg, trainer_cfg = self.cfg, self.cfg.trainer
        sinks = MetricSinks(self.run_dir, cfg.logger, OmegaConf.to_container(cfg, resolve=True),
                            resume_step=self.step) if self.env.is_main else None
        baseline = self.unigram_baseline()
        progress = tqdm(total=trainer_cfg.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                        disable=not (self.env.is_main and cfg.logger.progress), desc="train")
        meter = Throughput(cfg.data.batch_size * cfg.data.seq_len,
                           flops_per_event(self.model, cfg.model.n_layer, cfg.model.d_model, cfg.data.seq_len),
                           peak_flops(trainer_cfg.get("peak_flops"), self.device))
        max_time = parse_max_time(trainer_cfg.get("max_time"))
        # reserved before max_time: what the longest validation + checkpoint took (a guess until one is timed)
        closing_guess, closing_seconds = (self.validation_guess() if max_time is not None else 0.0), None
        last_val: dict[str, float] = {}
        status, stopped, first_step_at = "finished", None, None
        self.batches = self.batches or self.open_batches()
        if max_time is not None and self.elapsed + closing_guess >= max_time:  # resumed with no room for a step
            status = "time_limit"
        try:
            with StopSignals() as stop:
                vote = StopVote(stop, self.env.enabled, self.device, distributed.all_reduce_sum)
                mark = time.perf_counter()
                meter.start()
                while status == "finished" and self.step < trainer_cfg.max_steps:
                    totals = self.train_step()
                    self.step += 1
                    meter.step_done(self.batches.take_wait())
                    first_step_at = first_step_at or time.time()
                    last_step = self.step == trainer_cfg.max_steps
                    if self.step % trainer_cfg.log_every == 0 or last_step:
                        metrics = self.step_metrics(totals)  # the host sync: the device finished the steps
                        self.nonfinite.check()
                        speed = {k: v for k, v in meter.interval().items() if v is not None}
                        if sinks and metrics:
                            sinks.log(self.step, {**metrics, **speed})
                        progress.set_postfix(loss=f"{metrics.get('train/loss', float('nan')):.3f}",
                                             ev_s=f"{speed.get('events_per_s', 0):.0f}", refresh=False)
                    now = time.perf_counter()
                    self.elapsed, mark = self.elapsed + now - mark, now
                    step_seconds = meter.mean_step_seconds() or 0.0
                    # stop while a step, the vote's lag and the closing validation + checkpoint still fit
                    time_up = max_time is not None and (
                        self.elapsed + (1 + vote.lag) * step_seconds
                        + (closing_guess if closing_seconds is None else closing_seconds) >= max_time)
                    signalled, out_of_time = vote(time_up)
                    closing = time.perf_counter()
                    meter.pause()
                    validated = _due(self.step, trainer_cfg.val_every, last_step)
                    if validated or (out_of_time and not signalled):
                        self.nonfinite.check()
                        last_val = self.validate()
                        improved = last_val["val/bits_per_event"] < self.best_val
                        self.best_val = min(self.best_val, last_val["val/bits_per_event"])
                        if sinks:
                            sinks.log(self.step, last_val)
                        if improved:
                            self.save("best.pt")
                        if on_validation is not None:
                            try:
                                on_validation(self.step, last_val)
                            except StopRun as request:
                                stopped = request
                    if sinks and trainer_cfg.sample_every and _due(self.step, trainer_cfg.sample_every, last_step):
                        sample_during_training(self.model, self.store, cfg, self.run_dir, self.step, sinks)
                    ending = signalled or out_of_time or stopped is not None
                    if _due(self.step, trainer_cfg.ckpt_every, last_step) or ending:
                        self.elapsed += time.perf_counter() - mark
                        mark = time.perf_counter()
                        self.save("last.pt")
                    if validated or ending:
                        closing_seconds = max(closing_seconds or 0.0, time.perf_counter() - closing)
                    meter.start()
                    progress.update(1)
                    if ending:
                        status = ("preempted" if signalled else "stopped" if stopped is not None else "time_limit")
                        break
                self.elapsed += time.perf_counter() - mark
                progress.close()
                if sinks:
                    write_summary(self, status, last_val, baseline, meter, first_step_at)
                    sinks.close()
                if status == "preempted":
                    log.warning("stopped by signal %s at step %d; checkpoint written to %s",
                                stop.signal_name, self.step, self.ckpt_dir / "last.pt")
                    stop.hand_over(distributed.barrier)  # to submitit's handler (requeue) when there is one, else exit
                if status == "time_limit" and self.env.is_main:
                    log.info("trainer.max_time=%s reached at step %d (%.0f s of training); checkpoint written to %s",
                             trainer_cfg.max_time, self.step, self.elapsed, self.ckpt_dir / "last.pt")
        finally:
            self.batches.close()
            self.batches = None
        if stopped is not None:
            raise stopped
        return self.best_val

    def validation_guess(self) -> float:
        """Seconds the closing validation will take, from one timed batch: trainer.max_time keeps room for it
        until a whole validation has been timed."""
        started = time.perf_counter()
        self.validate(val_batches=1)
        batches = -(-eval_window_count(len(self.val_events), self.cfg.data.seq_len) // self.cfg.data.eval_batch_size)
        return (time.perf_counter() - started) * min(batches, self.cfg.trainer.val_batches or batches)

    def unigram_baseline(self) -> dict[str, float]:
        """From the store's field counts: reads one row of the validation split, whatever its size."""
        targets, n_events, n_notes = self.store.target_counts("val")
        return unigram_report(self.store.field_counts("train"), targets, n_events, n_notes,
                              self.store.manifest["splits"]["val"]["seconds"], prefix="unigram/val/")


def _due(step: int, every: int, last_step: bool) -> bool:
    return last_step or (every > 0 and step % every == 0)


def train(cfg: DictConfig, run_dir: str | Path,
          on_validation: Callable[[int, dict[str, float]], None] | None = None) -> float:
    """Train in `run_dir`; returns the best validation bits/event (the objective for sweeps).
    `on_validation(step, metrics)`: see Trainer.fit; a StopRun it raises ends the run and comes out here."""
    validate_config(cfg)
    env = distributed.discover()
    distributed.check_batch_split(cfg, env.world_size)
    device = pick_device(cfg.trainer.device, env.local_rank)
    distributed.setup(env, device.type)
    run_dir = Path(distributed.broadcast_object(str(run_dir)))  # under torchrun each rank's Hydra picks its own
    try:
        if env.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            log.info("run folder: %s", run_dir.resolve())
        best = Trainer(cfg, run_dir, env, device).fit(on_validation)
        if env.is_main:
            log.info("done: best val bits/event %.4f; run folder: %s", best, run_dir.resolve())
        return best
    finally:
        distributed.teardown()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    return exit_on_user_error(train, cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
