"""make bench-scale end to end at a tiny N, and its synthetic corpus: distinct songs the codec writes."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from midiformer.codec import events, grammar
from tests.conftest import REPO, dev_files


def test_variants_are_transposed_and_stretched_songs(dev_data):
    from bench_scale import SHIFTS, STRETCH_STEP, variant

    song = events.encode(next(f for f in dev_files() if f.parent.name == "pop909")).astype(np.int64)
    stretched = variant(song, len(SHIFTS) + 1)  # the second shift, played 1.04 times slower
    grammar.check(stretched, song=True)
    on, on_stretched = song[song[:, 0] == events.NOTE_ON], stretched[stretched[:, 0] == events.NOTE_ON]
    assert np.array_equal(on_stretched[:, events.NOTE], on[:, events.NOTE] + SHIFTS[1])
    factor = 1 + STRETCH_STEP
    assert events.grid_ticks(stretched)[-1] == round(events.grid_ticks(song)[-1] * factor)
    closed = on[:, events.DURATION] != events.OPEN
    lengths, stretched_lengths = on[closed, events.DURATION] - 1, on_stretched[closed, events.DURATION] - 1
    assert np.abs(stretched_lengths - np.minimum(lengths * factor, events.MAX_DURATION)).max() <= 1


@pytest.mark.slow  # two corpora prepared twice, two 1-step trainings, two evaluations: about 60 s on 2 cores
def test_bench_scale_runs_end_to_end(tmp_path):
    work = tmp_path / "scale"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_scale.py"), "--files", "100",
                             "--model", "tiny", "--seq-len", "64", "--work", str(work), "--keep"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    small, large = json.loads((work / "bench_scale.json").read_text())
    assert (small["files"], large["files"]) == (10, 100) and (small["files_ok"], large["files_ok"]) == (10, 100)
    assert large["events"] > 5 * small["events"] and large["eval_events"] > 0
    assert all(row["startup_s"] > 0 and row["train_rss_mib"] > 0 for row in (small, large))
    digests = {hashlib.sha256(path.read_bytes()).hexdigest() for path in (work / "corpus-100").rglob("*.mid")}
    assert len(digests) == 100  # every file distinct
    assert "| 100 |" in result.stdout and "start-up" in result.stdout
