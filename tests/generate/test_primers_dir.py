"""primers=DIR: one primer from each real song of a folder, continued by the tiny trained model and by an
untrained one; every sample's JSON holds its metrics and memorisation check, and the summary's mean and
std are those of the samples."""
from __future__ import annotations

import json

import numpy as np
import pytest

from midiformer.common import exit_on_user_error
from midiformer.generate.app import generate, score_continuations
from tests.generate.conftest import generate_cfg
from tests.train.conftest import CORPUS

SONGS = ("coconut_run2.mid", "chuggachugga.mid", "tttheme2.mid")
OPTIONS = ("primer.seconds=1.5", "n_events=60", "allow_end=false", "num_samples=1", "seeds=[3,4]")


@pytest.fixture(scope="module")
def primers_dir(tmp_path_factory, dev_data):
    folder = tmp_path_factory.mktemp("primers")
    for name in SONGS:
        (folder / name).symlink_to(CORPUS / name)
    (folder / "broken.mid").write_text("not a MIDI file")
    return folder


@pytest.fixture(scope="module")
def scored(trained_checkpoint, primers_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored")
    summary = score_continuations(trained_checkpoint, primers_dir, out, OPTIONS)
    return out, summary


@pytest.mark.slow  # two models x 3 songs x 2 samples, each written as MIDI, PNG, JSON and WAV
def test_every_song_gives_samples_with_metrics_and_memorisation(scored):
    out, summary = scored
    assert summary["primers"] == 3 and summary["samples_per_primer"] == 2 and summary["seeds"] == [3, 4]
    assert [s["file"].rsplit("/", 1)[-1] for s in summary["skipped"]] == ["broken.mid"]
    for model in ("model", "untrained"):
        for song in SONGS:
            for i in range(2):
                report = json.loads((out / model / song.removesuffix(".mid") / f"sample_{i:02d}.json").read_text())
                assert report["seed"] == [3, 4][i]
                assert report["metrics"]["real"]["notes"] > 0  # the song's real continuation was measured
                assert report["metrics"]["continuation"]["notes"] >= 0
                assert 0 <= report["memorisation"]["longest_run"] <= report["memorisation"]["notes"]
                assert 0.0 <= report["memorisation"]["share_in_runs"] <= 1.0
                real = report["memorisation"]["real_continuation"]
                assert real["notes"] == report["metrics"]["real"]["notes"] and real["longest_run"] <= real["notes"]


@pytest.mark.slow
def test_the_summary_is_the_mean_and_std_of_the_samples(scored):
    out, summary = scored
    table = summary["table"]
    assert set(table["chord_rate"]) == {"primer", "real", "model", "untrained"}
    for column, part, model in (("model", "continuation", "model"), ("real", "real", "model"),
                                ("untrained", "continuation", "untrained")):
        values = [json.loads(p.read_text())["metrics"][part]["polyphony"]
                  for p in sorted((out / model).glob("*/sample_*.json"))]
        values = [v for v in values if v is not None]
        assert table["polyphony"][column]["n"] == len(values)
        assert table["polyphony"][column]["mean"] == pytest.approx(np.mean(values))
        assert table["polyphony"][column]["std"] == pytest.approx(np.std(values))
    assert set(table["tempo_ratio"]) == {"model", "untrained"}
    assert set(table["longest_copied_run"]) == {"real", "model", "untrained"}
    assert set(table["pitch_class_distance_to_primer"]) == {"real", "model", "untrained"}
    markdown = (out / "summary.md").read_text()
    assert "| chord_rate |" in markdown and "untrained model" in markdown
    # The trained model learnt something the untrained one did not: it keeps the songs' instruments.
    kept = table["instruments_kept_to_primer"]
    assert kept["model"]["mean"] > kept["untrained"]["mean"]


def test_a_folder_without_midi_files_is_refused_in_one_line(trained_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit):
        exit_on_user_error(generate, generate_cfg(trained_checkpoint, tmp_path, f"primers={tmp_path}"), tmp_path)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"primers={tmp_path}: no .mid or .midi file" in err
