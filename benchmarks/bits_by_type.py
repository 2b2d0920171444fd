"""Held-out bits per note of a checkpoint, by event type and field: where the code length goes.

    python benchmarks/bits_by_type.py RUN/checkpoints/last.pt [--split test]

The evaluate app's figures (the grammar-masked loss of every target on the checkpoint's own store),
tallied by the type of the target row: what the note-off rows cost, against the note-ons, per field.
Each figure is divided by the split's note count, so the rows sum to the evaluate app's bits/note.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from midiformer.codec import events
from midiformer.data.dataset import eval_batches
from midiformer.data.store import Store, prepare_store
from midiformer.model.loss import LIKELIHOODS, masked_target_nats
from midiformer.train.checkpoint import model_from_checkpoint


def bits_by_type(checkpoint: str, split: str, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (nats (types, fields), rows per type) summed over the split."""
    model, cfg = model_from_checkpoint(checkpoint, torch.device("cpu"), averaged=False)
    store = Store(prepare_store(cfg.data))
    likelihood = LIKELIHOODS.build(cfg.model.likelihood)
    nats, rows = np.zeros((len(events.TYPES), len(events.FIELDS))), np.zeros(len(events.TYPES))
    seq_len = min(int(cfg.data.seq_len), int(cfg.model.max_seq_len))
    for batch in eval_batches(store.events(split), batch_size, seq_len, offsets=store.offsets(split)):
        inputs, targets, start = batch.to(torch.device("cpu"))
        logits, masks = model(inputs, targets, start.ticks, start.counts), likelihood(inputs, targets, start)
        target_type = targets[..., events.TYPE]
        for k, loss in enumerate(masked_target_nats(logits, targets, masks).values()):  # the training loss's own
            nats[:, k] += [loss[target_type == t].sum().item() for t in range(len(events.TYPES))]
        rows += [(target_type == t).sum().item() for t in range(len(events.TYPES))]
    return nats, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    nats, rows = bits_by_type(args.checkpoint, args.split, args.batch_size)
    notes = rows[events.NOTE_ON]
    bits = nats / math.log(2) / notes
    print(f"held-out bits per note by target type and field ({args.split}, {int(notes):,} notes)")
    print("type".ljust(11) + "".join(f.rjust(11) for f in events.FIELDS) + "      total  rows/note")
    for t, name in enumerate(events.TYPES):
        if rows[t]:
            print(name.ljust(11) + "".join(f"{x:11.3f}" for x in bits[t]) + f"{bits[t].sum():11.3f}{rows[t] / notes:11.3f}")
    print(f"all{bits.sum():{11 * len(events.FIELDS) + 8}.3f}")


if __name__ == "__main__":
    main()
