"""The heads that read what the song has played, registered in model/heads.py's HEADS:

    cascade_relative   a note's pitch, velocity and duration also as steps from the chosen channel's last note
    cascade_cache      cascade_relative, and counts of the values the song has played (an n-gram cache)

Both are cascade heads (heads.py CascadeHeads) with a memory of the window's rows (`remembers = True`): MidiGPT
gives them `memory(inputs, rows, rope, kv_cache, last, before)`, which they compute from the rows alone (no
attention) and, for the cache, from SongStart's counts of the song before the window.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from midiformer.codec.events import (
    CHANNEL,
    DURATION,
    FIELDS,
    NOTE,
    NOTE_OFF,
    NOTE_ON,
    START,
    TIME,
    TYPE,
    VELOCITY,
    VOCAB,
)
from midiformer.codec.grammar import COUNT_OFFSETS, COUNTED_COLUMNS
from midiformer.model.heads import HEADS, CascadeHeads, Memory, SongCounts
from midiformer.model.positions import Rope
from midiformer.model.values import ValueTables

# ---------------------------------------------------------------------------------------------------
# Values relative to what the window last played

RELATIVE_COLUMNS = (NOTE, VELOCITY, DURATION)  # the note-on fields read as steps from the channel's last one


def last_selected_row(selected: torch.Tensor) -> torch.Tensor:
    """selected (B, T, S) bool -> (B, T, S): after each row t, the last row <= t that slot s selects (-1: none)."""
    rows = torch.arange(selected.shape[1], device=selected.device).view(1, -1, 1)
    return torch.where(selected, rows, -1).cummax(dim=1).values


def last_where(selected: torch.Tensor, values: torch.Tensor, carried: torch.Tensor | None = None) -> torch.Tensor:
    """selected (B, T, S) bool, values (B, T, A) -> (B, T, S, A): after each row t, for each slot s, the values
    of the last row <= t that s selects; -1 where none does in the window, unless `carried` (B, S, A) holds
    them from before inputs[:, 0] (the KV cache's window)."""
    B, T, S = selected.shape
    last_row = last_selected_row(selected)
    picked = values.gather(1, last_row.clamp(min=0).view(B, T * S, 1).expand(-1, -1, values.shape[-1]))
    before = carried if carried is not None else values.new_full((B, S, values.shape[-1]), -1)
    return torch.where((last_row >= 0).unsqueeze(-1), picked.view(B, T, S, -1), before.unsqueeze(1))


def last_note_by_channel(inputs: torch.Tensor, carried: torch.Tensor | None = None) -> torch.Tensor:
    """inputs (B, T, F) -> (B, T, 16, 3): after each row t, for each channel c, the pitch, velocity and
    duration of the last note-on on c among rows 0..t (-1: none; carried: see last_where)."""
    channels = torch.arange(VOCAB["channel"], device=inputs.device)  # the 16 MIDI channels
    played = (inputs[..., TYPE] == NOTE_ON).unsqueeze(-1) & (inputs[..., CHANNEL].unsqueeze(-1) == channels)
    return last_where(played, inputs[..., list(RELATIVE_COLUMNS)], carried)


def note_of_channel(notes: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
    """notes (..., 16, 3) as last_note_by_channel gives them, channel (...) -> (..., 3): that channel's."""
    index = channel[..., None, None].expand(*channel.shape, 1, notes.shape[-1])
    return notes.gather(-2, index).squeeze(-2)


def last_onset_gap(inputs: torch.Tensor, carried: torch.Tensor | None = None) -> torch.Tensor:
    """inputs (B, T, F) -> (B, T): after each row t, the last time gap > 0 before a note-on among rows 0..t,
    the last inter-onset interval (-1: none; carried (B,): from before the window)."""
    onset = ((inputs[..., TYPE] == NOTE_ON) & (inputs[..., TIME] > 0)).unsqueeze(-1)
    before = carried.view(-1, 1, 1) if carried is not None else None
    return last_where(onset, inputs[..., TIME:TIME + 1], before)[..., 0, 0]


@HEADS.register("cascade_relative")
class CascadeRelativeHeads(CascadeHeads):
    """Cascade heads that read each value relative to what the window last played. Once the type and channel
    of the next event are chosen (a note-on or note-off), r = (pitch, velocity, duration) of that channel's
    last note-on in the window is known from the past alone; the later fields see it, and the pitch,
    velocity and duration get logits over their distance from it as well as over the value itself:

        z_k = h + sum_{j<k} E_j[y_j] + sum_a R_a[r_a]                              (k after channel)
        logits_k[v] = W_k u_k [v] + D_k u_k [v - r_k],   u_k = gelu(U_k z_k)       (k: note, velocity, duration)

    D_k u_k gives a score to every step v - r_k in -(V-1)..V-1: one vector says "an octave below" or "a
    little softer" whatever r_k is, where W_k must learn it value by value (relative pitch: Music
    Transformer's relative attention, Huang et al. 2018, for the same reason). Where r_k is unknown (no note
    on the channel yet in the window, or another type of row) R_a embeds "none" and the D_k term is 0.
    With relative_time, the time of a note-on also gets logits over its distance from the last
    inter-onset interval (a steady beat, a rhythm slightly rushed). Its memory costs a running maximum over
    the window's rows, no attention.
    """

    remembers = True

    def __init__(self, d_model: int, vocab: dict[str, int], tables: ValueTables | None = None, n_head: int = 1,
                 relative_time: bool = True, duration_from_gap: bool = False):
        super().__init__(d_model, vocab, tables)
        names = [self.fields[c] for c in RELATIVE_COLUMNS]
        self.reference_embed = nn.ModuleList(nn.Embedding(vocab[name] + 1, d_model) for name in names)  # 0: none
        self.relative_columns = ((TIME,) if relative_time else ()) + RELATIVE_COLUMNS
        self.relative_out = nn.ModuleDict({self.fields[c]: nn.Linear(d_model, 2 * vocab[self.fields[c]] - 1)
                                           for c in self.relative_columns})
        # the duration also as steps from the inter-onset interval that led to the note (a rhythm's notes
        # last about as long as they are apart)
        self.gap_out = nn.Linear(d_model, 2 * vocab["duration"] - 1) if duration_from_gap else None

    def memory(self, inputs: torch.Tensor, rows: torch.Tensor, rope: Rope | None, kv_cache=None,
               last: bool = False, before: SongCounts | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(each channel's last note (B, T, 16, 3), the last inter-onset interval (B, T)); the last row's with
        last=True. A KV cache carries both across calls."""
        carried = kv_cache.relative if kv_cache is not None and kv_cache.relative is not None else (None, None)
        notes, gap = last_note_by_channel(inputs, carried[0]), last_onset_gap(inputs, carried[1])
        if kv_cache is not None:
            kv_cache.relative = (notes[:, -1], gap[:, -1])
        return (notes[:, -1], gap[:, -1]) if last else (notes, gap)

    def references(self, chosen: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """chosen (..., k > channel) -> (..., 3) the chosen channel's last note; -1 none."""
        is_note = (chosen[..., TYPE] == NOTE_ON) | (chosen[..., TYPE] == NOTE_OFF)
        return torch.where(is_note.unsqueeze(-1), note_of_channel(memory[0], chosen[..., CHANNEL]), -1)

    def relative_logits(self, logits: torch.Tensor, u: torch.Tensor, field_index: int, r: torch.Tensor,
                        out: nn.Linear | None = None) -> torch.Tensor:
        """logits (..., V) + D_k u [v - r] for every value v, where r >= 0 (D_k: `out`, or the field's own)."""
        size = logits.shape[-1]
        distance = torch.arange(size, device=logits.device) + (size - 1 - r.clamp(min=0)).unsqueeze(-1)  # v - r + V - 1
        relative = (out or self.relative_out[self.fields[field_index]])(u).gather(-1, distance)
        return logits + relative * (r >= 0).unsqueeze(-1)

    def field_hidden(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor, memory: Memory) -> torch.Tensor:
        """u_k: the hidden layer of field k, which also sees the chosen channel's last note after the channel."""
        z = self.with_chosen(h, field_index, chosen)
        if field_index > CHANNEL:
            reference = self.references(chosen, memory)
            for a, embed in enumerate(self.reference_embed):
                z = z + embed(reference[..., a] + 1)
        return self.mix[field_index](z)

    def field_logits(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None = None,
                     memory: Memory | None = None) -> torch.Tensor:
        if field_index == TYPE:
            return super().field_logits(h, field_index, chosen)
        u = self.field_hidden(h, field_index, chosen, memory)
        return self.logits_from(u, field_index, chosen, memory)

    def logits_from(self, u: torch.Tensor, field_index: int, chosen: torch.Tensor, memory: Memory) -> torch.Tensor:
        """W_k u_k, plus the distance terms of the fields read relative to the past."""
        logits = self.out[field_index](u)
        if field_index == TIME:
            if TIME not in self.relative_columns:
                return logits
            return self.relative_logits(logits, u, TIME, torch.where(chosen[..., TYPE] == NOTE_ON, memory[1], -1))
        if field_index not in RELATIVE_COLUMNS:
            return logits
        reference = self.references(chosen, memory)
        logits = self.relative_logits(logits, u, field_index, reference[..., RELATIVE_COLUMNS.index(field_index)])
        if field_index == DURATION and self.gap_out is not None:
            gap = torch.where(chosen[..., TIME] > 0, chosen[..., TIME], memory[1])  # a chord's notes: the last gap
            gap = torch.where((chosen[..., TYPE] == NOTE_ON) & (gap >= 0), gap + 1, -1)  # durations code 1 + steps
            logits = self.relative_logits(logits, u, field_index, gap, self.gap_out)
        return logits


# ---------------------------------------------------------------------------------------------------
# Values the song has played, counted

ANY_CHANNEL_COLUMNS = (TIME, CHANNEL)  # chosen before the channel (or it): counted over every channel's note-ons
BY_PITCH_COLUMNS = (VELOCITY, DURATION)  # also counted per channel and pitch, in the window (a drum's stroke)


def column_slice(column: int) -> slice:
    k = COUNTED_COLUMNS.index(column)
    return slice(COUNT_OFFSETS[k], COUNT_OFFSETS[k + 1])


def take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, T), index (B, ...) of rows (-1: none) -> values[b, index] (-1 where none)."""
    picked = values.gather(1, index.clamp(min=0).flatten(1)).view(index.shape)
    return torch.where(index >= 0, picked, -1)


class PlayedCounts:
    """How often each value appeared on the note-ons of the song so far, seen from query rows: every row of
    the window (training: the counts before each row's next event) or, with last=True, the last one
    (generation). `rows` (B, T, F) is the window so far (with a KV cache, its rows too); `before` are
    SongStart's counts of the song's rows before the window (unigram counts only), and a START in the
    window begins a new song. Counts are (B, Q, V) sums of masks over the rows, by value:

        c[t, v] = #{s <= t in t's song: s a note-on [on channel c_t] [of pitch p_t] [after the same
                    `order` values on its channel as row t + 1 follows], x_s = v}

    The context of order n (an n-gram cache, as in IDyOM's short-term model, Pearce 2005) is the column's
    last n values on the channel chosen for row t + 1 (for the time and the channel: on any channel), which
    row t + 1 is to continue, matched against the n values before each earlier note-on on its channel.
    """

    def __init__(self, rows: torch.Tensor, before: SongCounts | None = None, last: bool = False):
        B, T, _ = rows.shape
        self.rows, self.before, self.last = rows, before, last
        queries = torch.arange(T - 1 if last else 0, T, device=rows.device)
        song = (rows[..., TYPE] == START).cumsum(1)  # 0 until a START begins the next song
        self.note_on = rows[..., TYPE] == NOTE_ON
        causal = torch.arange(T, device=rows.device).view(1, T) <= queries.view(-1, 1)  # (Q, T)
        self.counted = causal & (song[:, queries].unsqueeze(2) == song.unsqueeze(1)) & self.note_on.unsqueeze(1)
        self.first_song = song[:, queries] == 0  # (B, Q): the query rows that `before` precedes
        # each channel's last note-on row up to each row (B, T, 17: the 16 channels, then any channel)
        channels = torch.arange(VOCAB["channel"], device=rows.device)
        on_channel = self.note_on.unsqueeze(-1) & (rows[..., CHANNEL].unsqueeze(-1) == channels)
        selected = torch.cat([on_channel, self.note_on.unsqueeze(-1)], -1)
        last_row = last_selected_row(selected)
        same_song = song.gather(1, last_row.clamp(min=0).flatten(1)).view(last_row.shape) == song.unsqueeze(-1)
        self.last_row = torch.where(same_song, last_row, -1)  # a new song has played nothing yet
        # the note-on before each note-on, on its channel and on any (-1: none in the window)
        previous = torch.cat([torch.full_like(self.last_row[:, :1], -1), self.last_row[:, :-1]], 1)
        self.previous_on_channel = previous.gather(2, rows[..., CHANNEL].unsqueeze(-1)).squeeze(-1)
        self.previous_any = previous[..., -1]
        self.queries = queries

    def count(self, column: int, channel: torch.Tensor | None = None, pitch: torch.Tensor | None = None,
              orders: int = 0) -> list[torch.Tensor]:
        """Counts (B, Q, V) of the column's values after contexts of order 0..orders; channel, pitch (B, Q),
        or (B,) with last=True: those chosen for each query row's next event (channel None: any channel).
        pitch and orders > 0 count the window alone; order 0 adds the song's counts before it (not the
        channel's)."""
        if channel is not None and channel.dim() == 1:  # generation's chosen values (B,)
            channel, pitch = channel.unsqueeze(1), pitch.unsqueeze(1) if pitch is not None else None
        values, mask = self.rows[..., column], self.counted
        if channel is not None:
            mask = mask & (self.rows[..., CHANNEL].unsqueeze(1) == channel.unsqueeze(2))
        if pitch is not None:
            mask = mask & (self.rows[..., NOTE].unsqueeze(1) == pitch.unsqueeze(2))
        counts = [self.by_value(mask, values, column) + self.song_before(column, channel, pitch)]
        links = self.previous_on_channel if channel is not None else self.previous_any
        slot = channel if channel is not None else torch.full_like(self.first_song, VOCAB["channel"], dtype=torch.long)
        context_row = links  # the n-th note-on back on the channel, before each row s and up to each query t
        query_row = self.last_row[:, self.queries].gather(2, slot.unsqueeze(-1)).squeeze(-1)
        for _ in range(orders):
            mask = mask & (take(values, context_row).unsqueeze(1) == take(values, query_row).unsqueeze(2))
            counts.append(self.by_value(mask, values, column))
            context_row, query_row = take(links, context_row), take(links, query_row)
        return [c.squeeze(1) for c in counts] if self.last else counts

    @staticmethod
    def by_value(mask: torch.Tensor, values: torch.Tensor, column: int) -> torch.Tensor:
        """mask (B, Q, T) of counted rows -> (B, Q, V) counts of their values (a scatter: O(B Q T), where a
        one-hot matmul costs O(B Q T V))."""
        size = VOCAB[FIELDS[column]]
        return mask.new_zeros(*mask.shape[:2], size, dtype=torch.float32).scatter_add_(
            2, values.clamp(0, size - 1).unsqueeze(1).expand_as(mask), mask.float())

    def song_before(self, column: int, channel: torch.Tensor | None, pitch: torch.Tensor | None) -> torch.Tensor | float:
        """SongStart's counts before the window for the query rows of its first song (B, Q, V), or 0."""
        if self.before is None or pitch is not None or column not in (TIME,) + COUNTED_COLUMNS:
            return 0.0
        if channel is None:
            before = self.before[1].unsqueeze(1)
        else:
            batch = torch.arange(len(channel), device=channel.device).unsqueeze(1)
            before = self.before[0][batch, channel][..., column_slice(column)]
        return before * self.first_song.unsqueeze(-1)


@HEADS.register("cascade_cache")
class CascadeCacheHeads(CascadeRelativeHeads):
    """cascade_relative, and a cache of the values the song has played (the neural cache of Grave et al.
    2017, as a product of experts; the short-term model of IDyOM, Pearce 2005): a note-on's pitch, velocity
    and duration score by how often the chosen channel played each value so far, and after the same
    `orders` values before it; its time and channel by how often each led to a note-on on any channel:

        logits_k[v] += sum_n b_kn(u_k) log(c_kn[v] + a_kn),   b_kn = softplus(w_kn . u_k + β_kn),  a_kn = softplus(α_kn)

    A song keeps to a few velocities, lengths and pitches of its own, and repeats its phrases, which a
    softmax learned over the training songs does not know; the counts do, from the first bars on. b_kn,
    computed from the context, says how much to trust them (a drum fill, a new section), a_kn how much an
    unplayed value is worth. The velocity and duration are also counted per pitch (a drum's stroke).
    Counts of order 0 are the song's (SongStart carries those before the window; the channel's: the
    window's); the others the window's.
    """

    def __init__(self, d_model: int, vocab: dict[str, int], tables: ValueTables | None = None, n_head: int = 1,
                 relative_time: bool = True, duration_from_gap: bool = False, orders: int = 4):
        super().__init__(d_model, vocab, tables, n_head, relative_time, duration_from_gap)
        self.orders = orders
        names = [f"{self.fields[c]}_{n}" for c in ANY_CHANNEL_COLUMNS + COUNTED_COLUMNS for n in range(orders + 1)]
        names += [f"{self.fields[c]}_by_pitch" for c in BY_PITCH_COLUMNS]
        self.cache_gate = nn.ModuleDict({name: nn.Linear(d_model, 1) for name in names})
        for gate in self.cache_gate.values():
            nn.init.zeros_(gate.weight)  # b starts at softplus(0) = 0.69 everywhere
            nn.init.zeros_(gate.bias)
        self.cache_smoothing = nn.ParameterDict({name: nn.Parameter(torch.tensor(0.5413)) for name in names})  # a = 1

    def memory(self, inputs: torch.Tensor, rows: torch.Tensor, rope: Rope | None, kv_cache=None, last: bool = False,
               before: SongCounts | None = None):
        """cascade_relative's memory and the PlayedCounts of the window (with a KV cache: of its rows too,
        and of the song before it as the first call gave it); `before`: the song's counts before the window."""
        relative = super().memory(inputs, rows, rope, kv_cache, last)
        if kv_cache is not None:
            if kv_cache.rows is not None:
                inputs, before = torch.cat([kv_cache.rows, inputs], 1), kv_cache.song_counts
            kv_cache.rows, kv_cache.song_counts = inputs, before
        return (*relative, PlayedCounts(inputs, before, last))

    def logits_from(self, u: torch.Tensor, field_index: int, chosen: torch.Tensor, memory: Memory) -> torch.Tensor:
        logits = super().logits_from(u, field_index, chosen, memory)
        if field_index not in ANY_CHANNEL_COLUMNS + COUNTED_COLUMNS:
            return logits
        name, counter, note_on = self.fields[field_index], memory[2], (chosen[..., TYPE] == NOTE_ON).unsqueeze(-1)
        channel = None if field_index in ANY_CHANNEL_COLUMNS else chosen[..., CHANNEL]
        for n, counts in enumerate(counter.count(field_index, channel, orders=self.orders)):
            logits = logits + self.cache_term(u, f"{name}_{n}", counts * note_on)
        if field_index in BY_PITCH_COLUMNS:
            counts = counter.count(field_index, channel, chosen[..., NOTE])[0]
            logits = logits + self.cache_term(u, f"{name}_by_pitch", counts * note_on)
        return logits

    def cache_term(self, u: torch.Tensor, name: str, counts: torch.Tensor) -> torch.Tensor:
        """b(u) log(c + a) for counts c (..., V); rows that count nothing get a constant, which changes nothing."""
        trust = F.softplus(self.cache_gate[name](u))
        return trust * torch.log(counts + F.softplus(self.cache_smoothing[name]))
