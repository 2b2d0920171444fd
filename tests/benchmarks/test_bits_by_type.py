"""benchmarks/bits_by_type.py: the per-type tally adds up to the evaluate app's own figures."""
from __future__ import annotations

import math

import pytest
import torch

from midiformer.codec import events
from midiformer.evaluate import evaluate
from tests.generate.conftest import trained_checkpoint  # noqa: F401  (a fixture: a tiny trained run)
from tests.train.conftest import compose_config


def test_the_tally_by_type_sums_to_the_evaluate_apps_bits(trained_checkpoint, tmp_path):  # noqa: F811
    from bits_by_type import bits_by_type

    with torch.no_grad():
        nats, rows = bits_by_type(str(trained_checkpoint), "val", batch_size=4)
        report = evaluate(compose_config(f"checkpoint={trained_checkpoint}", "split=val", "batch_size=4",
                                         f"output={tmp_path / 'eval.json'}", config_name="evaluate"))
    assert rows.sum() == report["events"] and rows[events.NOTE_ON] == report["notes"]
    for k, field in enumerate(events.FIELDS):
        bits = nats[:, k].sum() / math.log(2) / report["events"]
        assert bits == pytest.approx(report["model"][f"bits_per_event/{field}"], rel=1e-4)
    assert nats[events.NOTE_OFF, events.VELOCITY] == 0 and nats[events.TEMPO, events.DURATION] == 0  # never coded
    assert nats[events.NOTE_ON, events.DURATION] > 0 and nats[events.NOTE_ON, events.NOTE] > 0
    assert nats[events.NOTE_OFF].sum() < 0.05 * nats.sum()  # with durations, few notes need a note_off row
