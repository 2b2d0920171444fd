"""Sampling events from a MidiGPT: per-field temperature / top-k / top-p, grammar masks, KV cache.

    samples = sample(model, primer_rows, settings, seed=0)     # one batch of settings.num_samples

Each event is sampled field by field in events.FIELDS order through `model.field_logits` (a cascade
head sees the fields already chosen; a parallel head ignores them, but the masks still depend on
them: the type decides which fields apply, the channel which notes may end). See grammar.py.

The context window: the model sees at most `model.max_seq_len` events. When it is full, the window
jumps forward by `slide` events and the KV cache is recomputed once over the events kept (exact:
no approximation, and the next `slide` events are cheap again). Without the cache every event
recomputes the same window from scratch, so both paths see identical contexts; random numbers come
from one torch.Generator, drawn identically in both paths, and logits are float32: with the same
seed both paths give the same events (log-probabilities agree to float rounding).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from midiformer.codec import events
from midiformer.codec.grammar import played_counts
from midiformer.common import ConfigError
from midiformer.generate.grammar import CHANNEL, NOTE, TIME, TYPE, SongState


@dataclass
class FieldSampling:
    """How one field is drawn: logits / temperature, then the top_k most likely (0 = all), then the
    smallest set whose probability reaches top_p (1.0 = all)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


@dataclass
class Settings:
    n_events: int = 512                 # events to sample after the primer (at most)
    seconds: float | None = None        # or stop a sample once its continuation lasts this long
    num_samples: int = 1                # samples drawn together, in one batch
    kv_cache: bool = True               # False: recompute the whole window for every event
    slide: int | None = None            # events the window jumps when full; None = max_seq_len // 4
    instruments: list | None = None     # programs (and 'drums') the model may use; None = all
    allow_end: bool = True              # False: END is masked, every sample runs to n_events / seconds
    ticks_per_beat: int = 96            # the codec grid the model was trained on (data.codec.ticks_per_beat)
    controls: tuple | None = None       # the controllers its codec carried (data.codec.controls); None: any
    pitch_bend: bool = True             # whether its codec carried pitch bends (data.codec.pitch_bend)
    durations: bool = True              # whether its codec coded durations on note-ons (data.codec.durations)
    fields: list[FieldSampling] = field(default_factory=lambda: [FieldSampling() for _ in events.FIELDS])
    progress: bool = False              # a tqdm bar with events/s


@dataclass
class Sample:
    """One sample's continuation (its rows after the primer), the model's log-probability of each
    field of each row (0 for the fields that do not apply), and the notes still sounding after it."""

    rows: np.ndarray
    logprobs: np.ndarray
    sounding: list[tuple[int, int]]


def field_settings(temperature: Any, top_k: Any, top_p: Any) -> list[FieldSampling]:
    """One FieldSampling per field from options that are a number (every field) or {field: number}."""
    def value(option: Any, name: str, default: float) -> Any:
        if isinstance(option, (int, float)) and not isinstance(option, bool):
            return option
        option = dict(option or {})
        unknown = set(option) - set(events.FIELDS)
        if unknown:
            raise ConfigError(f"{sorted(unknown)[0]!r} is not a field; the fields are: {', '.join(events.FIELDS)}")
        return option.get(name, default)

    fields = [FieldSampling(value(temperature, name, 1.0), value(top_k, name, 0), value(top_p, name, 1.0))
              for name in events.FIELDS]
    for name, f in zip(events.FIELDS, fields):
        if not isinstance(f.temperature, (int, float)) or f.temperature <= 0:
            raise ConfigError(f"temperature.{name}={f.temperature!r} must be a number > 0")
        if not isinstance(f.top_k, int) or f.top_k < 0:
            raise ConfigError(f"top_k.{name}={f.top_k!r} must be an integer >= 0 (0 = off)")
        if not isinstance(f.top_p, (int, float)) or not 0 < f.top_p <= 1:
            raise ConfigError(f"top_p.{name}={f.top_p!r} must be in (0, 1] (1 = off)")
    return fields


def shaped_logits(logits: torch.Tensor, allowed: torch.Tensor, how: FieldSampling) -> torch.Tensor:
    """Logits (B, V) with the disallowed values at -inf, divided by the temperature, cut to top-k/top-p."""
    logits = logits.masked_fill(~allowed, -torch.inf) / how.temperature
    if 0 < how.top_k < logits.shape[-1]:
        kth_best = logits.topk(how.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, -torch.inf)
    if how.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the values ranked above each one
        drop = before >= how.top_p  # never the most likely value: its `before` is 0
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, -torch.inf))
    return logits


def sample_event(model, context: tuple, state: SongState, settings: Settings,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The next event of every sample from model.next_context's (h (B, d), memory): rows (B, F) and the
    model's log-probs (B, F)."""
    h, memory = context
    batch, n_fields = h.shape[0], len(events.FIELDS)
    chosen = torch.zeros(batch, n_fields, dtype=torch.long, device=h.device)
    logprobs = torch.zeros(batch, n_fields, dtype=torch.float32, device=h.device)
    applies_to = torch.as_tensor(events.APPLIES, device=h.device)
    for k in range(n_fields):
        applies = applies_to[chosen[:, TYPE], k]  # field 0 (type) always: chosen[:, TYPE] is 0 = START here
        if not applies.any():  # e.g. the velocity of note_offs only: every sample gets 0, no draw is made
            continue
        logits = model.field_logits(h, k, chosen[:, :k], memory).float()
        allowed = state.allowed(k, chosen[:, :k])
        probs = shaped_logits(logits, allowed, settings.fields[k]).softmax(-1)
        value = torch.multinomial(probs, 1, generator=generator)[:, 0]  # the same draws for the same values
        chosen[:, k] = torch.where(applies, value, 0)
        # the model's log-probability under the grammar (as model.likelihood=grammar scores it), before any
        # temperature or top-k/top-p shaping
        grammar_logprobs = logits.masked_fill(~allowed, -torch.inf).log_softmax(-1)
        logprobs[:, k] = torch.where(applies, grammar_logprobs.gather(1, value[:, None])[:, 0], 0.0)
    return chosen, logprobs


class ContextWindow:
    """The events the model sees, as (B, T, F) rows[:, start:end], and the hidden state of the last one."""

    def __init__(self, model, rows: torch.Tensor, kv_cache: bool, slide: int | None):
        self.model, self.rows, self.kv_cache = model, rows, kv_cache
        self.slide = slide if slide is not None else max(model.max_seq_len // 4, 1)
        if not 1 <= self.slide < model.max_seq_len:
            raise ConfigError(f"slide={self.slide} must be in [1, model.max_seq_len={model.max_seq_len})")
        self.start, self.cache = 0, None
        self.counts, self.counted_before = None, 0  # what the song played before rows[:, start] (cascade_cache)

    def next_context(self, end: int) -> tuple:
        """model.next_context after rows[:, :end] (h (B, d) of the last, and the heads' memory), the model
        seeing at most max_seq_len of them."""
        if end - self.start > self.model.max_seq_len:  # full: jump, and the cache starts again
            self.start, self.cache = end - (self.model.max_seq_len - self.slide), None
        # the grid tick of the row before the window (rows[:, 0] is the song's START: the sum of the gaps),
        # and what the song played before it (as SongStart gives a training window)
        ticks = self.rows[:, :self.start, TIME].sum(1) if self.start else None
        if self.start and self.counted_before != self.start:  # once per jump: the rows before it stay as they are
            self.counts, self.counted_before = self.song_counts(), self.start
        counts = self.counts if self.start else None
        if not self.kv_cache:
            return self.model.next_context(self.rows[:, self.start:end], start_ticks=ticks, song_counts=counts)
        if self.cache is None:
            self.cache = self.model.new_kv_cache()
            return self.model.next_context(self.rows[:, self.start:end], self.cache, start_ticks=ticks, song_counts=counts)
        return self.model.next_context(self.rows[:, end - 1:end], self.cache)

    def song_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """grammar.played_counts of each sample's rows before the window."""
        played, gaps = zip(*(played_counts(rows) for rows in self.rows[:, :self.start].cpu().numpy()))
        return (torch.from_numpy(np.stack(played)).to(self.rows.device),
                torch.from_numpy(np.stack(gaps)).to(self.rows.device))


@torch.inference_mode()
def sample(model, primer: np.ndarray, settings: Settings, seed: int = 0) -> list[Sample]:
    """Continue `primer` (T0, F) rows, starting with a START row, in settings.num_samples samples.

    A sample stops at an END row, after settings.seconds of continuation, or after n_events; the
    batch runs on until every sample has stopped, but a stopped sample's state no longer changes."""
    device = next(model.parameters()).device
    if len(primer) > model.max_seq_len:
        raise ConfigError(f"the primer has {len(primer)} events, more than the context "
                          f"(model.max_seq_len={model.max_seq_len}); use a shorter primer.seconds or primer.events")
    batch, first = settings.num_samples, len(primer)
    rows = torch.zeros(batch, first + settings.n_events, len(events.FIELDS), dtype=torch.long, device=device)
    rows[:, :first] = torch.as_tensor(primer, dtype=torch.long, device=device)
    logprobs = torch.zeros(batch, settings.n_events, len(events.FIELDS), device=device)
    state = SongState(batch, settings.ticks_per_beat, settings.instruments, settings.allow_end, device,
                      settings.controls, settings.pitch_bend, settings.durations)
    state.follow(rows[0, :first])
    primer_seconds = state.seconds.clone()
    window = ContextWindow(model, rows, settings.kv_cache, settings.slide)
    generator = torch.Generator(device).manual_seed(seed)
    length = torch.full((batch,), settings.n_events, dtype=torch.long, device=device)  # rows each sample keeps
    running = torch.ones(batch, dtype=torch.bool, device=device)
    bar = tqdm(total=batch * settings.n_events, unit="event", unit_scale=True, disable=not settings.progress,
               desc=f"sampling {batch} x")
    for step in range(settings.n_events):
        event, logprobs[:, step] = sample_event(model, window.next_context(first + step), state, settings, generator)
        rows[:, first + step] = event
        state.update(event, running)
        stops = event[:, TYPE] == events.END
        if settings.seconds is not None:
            stops |= state.seconds - primer_seconds >= settings.seconds
        length = torch.where(stops & running, step + 1, length)
        running &= ~stops
        bar.update(batch)
        if not running.any():
            break
    bar.close()
    return [Sample(rows[b, first:first + length[b]].cpu().numpy(), logprobs[b, :length[b]].cpu().numpy(),
                   state.sounding_notes(b)) for b in range(batch)]


def closed(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """The continuation ended properly, and the model's log-probability of each row (summed over its
    fields; NaN for the rows the model did not sample): a note_off for every note still sounding, then
    END. If the model sampled END, the note_offs take its place in time and END stays its own. A
    continuation cut after a time_shift row gives that rest to the first closing row instead, as
    the codec frames a rest (a time_shift is always followed by a row of time >= 1)."""
    rows, logprob = sample.rows.astype(np.int64), sample.logprobs.sum(1, dtype=np.float64)
    closing = np.zeros((len(sample.sounding) + 1, len(events.FIELDS)), np.int64)
    closing[:-1, TYPE], closing[-1, TYPE] = events.NOTE_OFF, events.END
    closing[:-1, [CHANNEL, NOTE]] = np.array(sample.sounding, np.int64).reshape(-1, 2)
    closing_logprob = np.full(len(closing), np.nan)
    if len(rows) and rows[-1, TYPE] == events.END:
        closing[0, TIME], closing_logprob[-1] = rows[-1, TIME], logprob[-1]
        rows, logprob = rows[:-1], logprob[:-1]
    elif len(rows) and rows[-1, TYPE] == events.TIME_SHIFT:
        closing[0, TIME] = events.MAX_TIME_SHIFT
        rows, logprob = rows[:-1], logprob[:-1]
    return np.concatenate([rows, closing]), np.concatenate([logprob, closing_logprob])
