"""A piano-roll picture of a generated MIDI file: time x pitch, one colour per instrument.

Drawn from the MIDI file itself (read back with the project's reader), so the picture shows what
plays: the primer on a shaded background, the whistle in red with a line at the hand-over, the
continuation after it. matplotlib's object API (no pyplot): no global state, no display needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from midiformer.codec import events, midi
from midiformer.codec.notes import pair_notes

PRIMER_SHADE = "#e4e4e4"
WHISTLE_COLOUR = "#e8112d"
DRUM_COLOUR = "#303030"
_INSTRUMENT_COLOURS = colormaps["tab20"]
# The 16 General MIDI families of 8 programs each, to name a program in the legend.
GM_FAMILIES = ("piano", "chromatic perc.", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
               "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")


def instrument_colours(programs) -> dict[int, tuple]:
    """A colour per melodic program of a song: tab20's ten dark shades first, then the light ones, so
    that up to ten instruments get clearly different hues (the drums are dark grey, the whistle red)."""
    return {int(p): _INSTRUMENT_COLOURS((2 * i) % 20 + (i // 10) % 2) for i, p in enumerate(sorted(set(programs)))}


def draw_pianoroll(midi_path: str | Path, handover_tick: int, whistle_channel: int | None = None,
                   title: str = "", size: tuple[float, float] = (12.0, 5.0), dpi: int = 100) -> Figure:
    """The figure of a MIDI file: x in beats, y in MIDI pitch. `handover_tick` is in the file's ticks."""
    messages = midi.read_midi(midi_path)
    notes, _programs, _stats = pair_notes(messages)  # (onset, offset, channel, pitch, velocity, program)
    per_beat = messages.ticks_per_quarter
    onset, offset = notes[:, 0] / per_beat, notes[:, 1] / per_beat
    channel, pitch, program = notes[:, 2], notes[:, 3], notes[:, 5]
    handover = handover_tick / per_beat
    end = max(float(offset.max()) if len(notes) else 0.0, handover) + 0.5

    fig = Figure(figsize=size, dpi=dpi)
    ax = fig.add_subplot()
    ax.axvspan(0, handover, color=PRIMER_SHADE, zorder=0)
    ax.axvline(handover, color=WHISTLE_COLOUR, linestyle="--", linewidth=1, zorder=1)
    is_whistle = channel == whistle_channel
    is_drum = channel == events.DRUM_CHANNEL
    legend = [Patch(color=PRIMER_SHADE, label="primer")] if handover > 0 else []
    colours = instrument_colours(program[~is_whistle & ~is_drum].tolist())
    groups = [(f"{p} {GM_FAMILIES[p // 8]}", ~is_whistle & ~is_drum & (program == p), colour)
              for p, colour in colours.items()]
    groups += [("drums", is_drum & ~is_whistle, DRUM_COLOUR), ("whistle (hand-over)", is_whistle, WHISTLE_COLOUR)]
    for label, group, colour in groups:
        if not group.any():
            continue
        whistle = label.startswith("whistle")
        # A zero-length note still gets a sliver of width, so that every note is visible.
        ax.barh(pitch[group], np.maximum(offset[group] - onset[group], 0.05), left=onset[group],
                height=2.5 if whistle else 0.9, color=colour, edgecolor="black" if whistle else "none",
                linewidth=0.8 if whistle else 0, zorder=3 if whistle else 2)
        legend.append(Patch(color=colour, label=label))
    low, high = (int(pitch.min()) - 2, int(pitch.max()) + 2) if len(notes) else (48, 72)
    ax.set(xlim=(0, end), ylim=(low, high), xlabel="beats (quarter notes)", ylabel="MIDI pitch", title=title)
    if handover > 0:
        ax.text(handover / 2, high - 0.5, "primer", ha="center", va="top", fontsize=9)
    ax.text((handover + end) / 2, high - 0.5, "continuation", ha="center", va="top", fontsize=9)
    columns = 1 + len(legend) // 22  # a legend taller than the axes goes on in a second column
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, ncols=columns)
    fig.subplots_adjust(left=0.06, right=0.98 - 0.13 * columns, bottom=0.11, top=0.9)
    return fig


def save_pianoroll(midi_path: str | Path, png_path: str | Path, handover_tick: int,
                   whistle_channel: int | None = None, title: str = "") -> Figure:
    """Draw and write the PNG; returns the figure (its axes map notes to the PNG's pixels)."""
    fig = draw_pianoroll(midi_path, handover_tick, whistle_channel, title)
    fig.savefig(png_path, dpi=fig.dpi)
    return fig
