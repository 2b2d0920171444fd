"""Data: MIDI folders -> prepared stores (corpus, store, bach) -> training and evaluation batches
(dataset, augment). Import the submodules directly; this package imports nothing heavy on its own."""
