"""The codec: a MIDI file <-> rows of integer fields (events.py), over our own SMF reader/writer (midi.py)."""
