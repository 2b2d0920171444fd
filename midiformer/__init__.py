"""midiformer: decoder-only transformers on raw MIDI events."""

__version__ = "0.1.0"
