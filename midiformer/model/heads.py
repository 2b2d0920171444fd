"""Output heads: from the last hidden state to one set of logits per field of the NEXT event.

Chosen by `model.heads` and built as `HEADS.build(cfg.model.heads, d_model=d, vocab=events.VOCAB, tables=...,
n_head=h)`.

Every head has the same two entry points:
    forward(h, targets, memory)              training: h (B, T, d), targets (B, T, F) -> {field: (B, T, V)}
    field_logits(h, field_index, chosen, memory)
                                             generation: h (..., d), chosen (..., k) = the values already
                                             picked for fields 0..k-1 of the event (k = field_index),
                                             -> logits (..., V) of field k
A sampler calls field_logits for k = 0, 1, ... in events.FIELDS order, appending each sampled value
to `chosen`; the parallel head ignores `chosen`. `memory` is for heads that read the window's rows
(`remembers = True`: cascade_lookup, cascade_relative); MidiGPT gives it to them and None to the others:

    memory(inputs, rows, rope, kv_cache=None, last=False, before=None)
                                             inputs (B, T, F) the rows, rows (B, T, d) their embeddings,
                                             rope the blocks' rotation; kv_cache: inputs follow its rows
                                             (a head keeps what it needs there); last: for the last row only;
                                             before: SongStart.counts, the song's values before the window
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
from midiformer.model.positions import Rope, apply_rope
from midiformer.model.values import ValueTables
from midiformer.registry import Registry

HEADS = Registry("model.heads")
# what a remembering head reads of the window: cascade_lookup the rows' keys, values and the query rotation;
# cascade_relative each channel's last note and the last inter-onset interval (last_note_by_channel, last_onset_gap)
Memory = "tuple[torch.Tensor, torch.Tensor, Rope | None] | tuple[torch.Tensor, torch.Tensor]"
SongCounts = "tuple[torch.Tensor, torch.Tensor]"  # grammar.SongStart.counts: what the song played before the window


@HEADS.register("parallel")
class ParallelHeads(nn.Module):
    """Every field from the hidden state alone: the fields of one event are independent given h."""

    def __init__(self, d_model: int, vocab: dict[str, int], tables: ValueTables | None = None, n_head: int = 1):
        super().__init__()  # n_head: the model's attention heads, for the heads that attend (cascade_lookup)
        self.fields, tables = tuple(vocab), tables or ValueTables()
        self.out = nn.ModuleList(tables.linear(name, d_model, size) for name, size in vocab.items())

    remembers = False  # needs no memory of the window's rows (see CascadeLookupHeads)

    def field_logits(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None = None,
                     memory: Memory | None = None) -> torch.Tensor:
        return self.out[field_index](h)

    def forward(self, h: torch.Tensor, targets: torch.Tensor | None = None,
                memory: Memory | None = None) -> dict[str, torch.Tensor]:
        return {name: self.field_logits(h, k) for k, name in enumerate(self.fields)}


@HEADS.register("cascade")
class CascadeHeads(nn.Module):
    """Fields in events.FIELDS order; field k sees h plus the embeddings of the event's fields 0..k-1:

        z_k = h + sum_{j<k} E_j[y_j],   logits_k = W_k gelu(U_k z_k)   (k >= 1; field 0 is W_0 h)

    y_j is the target in training (teacher forcing) and the sampled value in generation. The hidden
    layer U_k lets a chosen field interact with the context (a note-off's pitch must be one sounding
    on the chosen channel), which a linear head on z_k cannot express.
    """

    def __init__(self, d_model: int, vocab: dict[str, int], tables: ValueTables | None = None, n_head: int = 1):
        super().__init__()  # n_head: the model's attention heads, for the heads that attend (cascade_lookup)
        self.fields, tables = tuple(vocab), tables or ValueTables()
        sizes = list(vocab.values())
        self.embed = nn.ModuleList(tables.embedding(name, size, d_model)  # the last is never fed back
                                   for name, size in list(vocab.items())[:-1])
        self.mix = nn.ModuleList([nn.Identity()] + [nn.Sequential(nn.Linear(d_model, d_model), nn.GELU()) for _ in sizes[1:]])
        self.out = nn.ModuleList(tables.linear(name, d_model, size) for name, size in vocab.items())

    remembers = False

    def with_chosen(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None) -> torch.Tensor:
        """z_k = h + sum_{j<k} E_j[y_j]: the hidden state with the fields already chosen for the event."""
        z = h
        for j in range(field_index):
            z = z + self.embed[j](chosen[..., j])
        return z

    def field_logits(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None = None,
                     memory: Memory | None = None) -> torch.Tensor:
        return self.out[field_index](self.mix[field_index](self.with_chosen(h, field_index, chosen)))

    def forward(self, h: torch.Tensor, targets: torch.Tensor | None = None,
                memory: Memory | None = None) -> dict[str, torch.Tensor]:
        if targets is None:
            raise ValueError(f"{type(self).__name__} are teacher-forced: forward(inputs, targets) needs targets")
        if self.remembers and memory is None:
            raise ValueError(f"{type(self).__name__} read the window's rows: call them through MidiGPT, "
                             "which gives them the rows' memory")
        chosen = targets.clamp(min=0)  # IGNORE (< 0: a field that does not apply, or padding) embeds as 0
        return {name: self.field_logits(h, k, chosen, memory) for k, name in enumerate(self.fields)}


@HEADS.register("cascade_lookup")
class CascadeLookupHeads(CascadeHeads):
    """Cascade heads that look back once the first fields are chosen: field k >= 1 attends to the rows of
    the window as they entered the model (x_s, the summed field embeddings of row s), with a query that
    knows the fields already chosen for the next event:

        z_k = h_t + sum_{j<k} E_j[y_j],   z_k += W_o Attn(q = R_t W_q z_k;  keys R_s W_k x_s, values W_v x_s;  s <= t)

    R is the rotation of model/pos (rope, rope_time; none for learned positions, so the look-up then
    cannot tell a recent row from an old one). A chosen channel finds its own rows this way (the
    velocity it played last, its pitches), which h_t, computed before the channel was chosen, would
    otherwise have to hold for every channel at once. One attention is shared by the fields.

    The look-up needs the window's rows besides h: `memory(rows, rope)` gives their keys and values,
    passed to forward (training) and to field_logits (generation: those of every row up to the last,
    and the rotation of the last; MidiGPT.next_context builds them, with the KV cache or without).
    """

    remembers = True

    def __init__(self, d_model: int, vocab: dict[str, int], tables: ValueTables | None = None, n_head: int = 1):
        super().__init__(d_model, vocab, tables)
        self.n_head = n_head  # the blocks' heads: the rotation of model/pos is shaped for their head size
        self.q, self.k, self.v, self.proj = (nn.Linear(d_model, d_model) for _ in range(4))

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)

    def memory(self, inputs: torch.Tensor, rows: torch.Tensor, rope: Rope | None, kv_cache=None,
               last: bool = False, before: SongCounts | None = None) -> Memory:
        """rows (B, T, d) input embeddings -> keys, values (B, H, T', D) of the look-up (T' = T, or every row
        so far with a cache) and the rotation of the queries (of the last row only with last=True)."""
        keys = self.split_heads(self.k(rows))
        keys, values = (apply_rope(keys, *rope) if rope is not None else keys), self.split_heads(self.v(rows))
        if kv_cache is not None:
            keys, values = kv_cache.head.append(keys, values)
        if last and rope is not None:
            rope = tuple(part[..., -1:, :] for part in rope)
        return keys, values, rope

    def look(self, z: torch.Tensor, memory: Memory) -> torch.Tensor:
        """z (B, T, d): the last T rows' queries, each seeing the keys up to its own row."""
        keys, values, rope = memory
        q = self.split_heads(self.q(z))
        if rope is not None:
            q = apply_rope(q, *rope)
        y = F.scaled_dot_product_attention(q, keys, values, is_causal=z.shape[1] > 1)
        return z + self.proj(y.transpose(1, 2).reshape(z.shape))

    def field_logits(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None = None,
                     memory: Memory | None = None) -> torch.Tensor:
        if field_index == 0:
            return self.out[0](h)
        z = self.with_chosen(h, field_index, chosen)
        one_row = z.dim() == 2  # generation: h (B, d) of the last row
        z = self.look(z.unsqueeze(1) if one_row else z, memory)
        return self.out[field_index](self.mix[field_index](z[:, 0] if one_row else z))



# ---------------------------------------------------------------------------------------------------
# Values relative to what the window last played

RELATIVE_COLUMNS = (NOTE, VELOCITY, DURATION)  # the note-on fields read as steps from the channel's last one


def last_where(selected: torch.Tensor, values: torch.Tensor, carried: torch.Tensor | None = None) -> torch.Tensor:
    """selected (B, T, S) bool, values (B, T, A) -> (B, T, S, A): after each row t, for each slot s, the values
    of the last row <= t that s selects; -1 where none does in the window, unless `carried` (B, S, A) holds
    them from before inputs[:, 0] (the KV cache's window)."""
    B, T, S = selected.shape
    rows = torch.arange(T, device=values.device).view(1, T, 1)
    last_row = torch.where(selected, rows, -1).cummax(dim=1).values  # (B, T, S)
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
    last n values on the channel chosen for row t + 1 (for the time and the channel: on any channel), which row t + 1 is to
    continue, matched against the n values before each earlier note-on on its channel.
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
        steps = torch.arange(T, device=rows.device).view(1, T, 1)
        last_row = torch.where(selected, steps, -1).cummax(dim=1).values
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
