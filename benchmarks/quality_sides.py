"""bench-quality's sides, each trained and scored in its own process: midiformer, and MidiTok + the plain GPT.

midiformer goes through its own public path only: the train config composed with Hydra's compose API,
`midiformer.train.loop.train`, then the evaluate app's `evaluate` on a store of the held-out folder, so
whatever changes in the model or its defaults shows up here untouched. A MidiTok side trains the plain
GPT (plain_gpt.py) with midiformer's optimizer, schedule, clipping and window sampler on the same files.
Every side returns total bits over the held-out set; the caller divides by the shared denominators.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from midiformer.common import CONF_DIR, LN2


def compose_config(config_name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name, overrides=overrides)


def midiformer_overrides(side: dict, shape: dict, train_root: Path, cache_dir: Path) -> list[str]:
    """The train app's overrides of a midiformer side: data, shape, optimizer recipe, then the user's own.
    Validation is one batch at the end: the figures come from scoring last.pt on the held-out set."""
    levels = side["velocity_levels"]
    return [
        "data=midi_dir", f"data.root={train_root}", f"data.cache_dir={cache_dir}", "data.num_workers=1",
        # the seed's seven types: the information MidiTok's REMI and MIDILike carry (no pedal, no bends)
        "data/codec=seed", f"data.codec.ticks_per_beat={side['ticks_per_beat']}", f"data.velocity_levels={'null' if levels is None else levels}",
        f"data.seq_len={shape['context']}", f"data.batch_size={shape['batch']}", f"data.eval_batch_size={shape['batch']}",
        f"model.n_layer={shape['layers']}", f"model.d_model={shape['d_model']}", f"model.n_head={shape['heads']}",
        f"model.max_seq_len={shape['context']}", f"model.dropout={shape['dropout']}",
        f"optim.lr={shape['lr']}", f"optim.warmup_steps={shape['warmup']}", f"optim.min_lr_ratio={shape['min_lr_ratio']}",
        "trainer/precision=fp32", f"trainer.device={shape['device']}", f"trainer.max_steps={shape['steps']}",
        "trainer.val_every=0", "trainer.val_batches=1", "trainer.ckpt_every=0", "trainer.resume=never", f"trainer.log_every={max(1, shape['steps'] // 20)}",
        f"trainer.num_threads={shape['threads']}", "logger.progress=false", "logger.tensorboard=false",
        f"seed={shape['seed']}", *side.get("overrides", []),
    ]


def run_side(side: dict, shape: dict, paths: dict) -> dict:
    """Worker entry: train and score one side; returns its figures (JSON-ready)."""
    torch.set_num_threads(shape["threads"])
    run_dir = Path(paths["work_dir"]) / side["name"]
    started, cpu_started = time.perf_counter(), time.process_time()
    print(f"[{side['name']}] training on {shape['threads']} thread(s): {shape['steps']} steps", flush=True)
    result = (run_midiformer if side["kind"] == "midiformer" else run_miditok)(side, shape, paths, run_dir)
    result.update(name=side["name"], kind=side["kind"], seconds_total=round(time.perf_counter() - started, 1),
                  cpu_seconds_total=round(time.process_time() - cpu_started, 1))  # what an idle core would take
    print(f"[{side['name']}] done in {result['seconds_total'] / 60:.1f} min: {result['total_bits']:,.0f} bits "
          f"over {result['targets']:,} targets", flush=True)
    return result


# --- midiformer ----------------------------------------------------------------------------------

def run_midiformer(side: dict, shape: dict, paths: dict, run_dir: Path) -> dict:
    from midiformer.data.store import Store, prepare_store
    from midiformer.train.loop import train

    cfg = compose_config("config", midiformer_overrides(side, shape, Path(paths["train_root"]), Path(paths["cache_dir"])))
    train_started, cpu_started = time.perf_counter(), time.process_time()
    train(cfg, run_dir)
    run_seconds = time.perf_counter() - train_started  # with store preparation and the final validation
    train_cpu_seconds = time.process_time() - cpu_started  # the same, in CPU seconds of this process
    summary = json.loads((run_dir / "summary.json").read_text())
    checkpoint = run_dir / "checkpoints" / "last.pt"
    report = score_folder(checkpoint, cfg, Path(paths["heldout_root"]), run_dir / "heldout.json", shape)
    by_folder = {folder: score_folder(checkpoint, cfg, Path(paths["heldout_root"]) / folder,
                                      run_dir / f"heldout_{folder}.json", shape)
                 for folder in paths["source_folders"]}
    held_out = Store(report["store"])
    if held_out.manifest["files_skipped"] or held_out.manifest["songs"] != paths["heldout_files"]:
        raise RuntimeError(f"{held_out.path}: the held-out store does not hold every kept file")
    total_bits = report["model"]["bits_per_event"] * report["events"]
    train_store = Store(prepare_store(cfg.data))  # the store train() used: reused, not rebuilt
    unigram = report["unigram"]  # the evaluate app's: the checkpoint's own training field counts
    return {
        "total_bits": total_bits, "targets": report["events"],
        "unigram_total_bits": unigram["bits_per_event"] * report["events"],
        "bits_per_event_by_field": {key.split("/", 1)[1]: value for key, value in report["model"].items()
                                    if key.startswith("bits_per_event/")},
        "notes_coded": report["notes"], "train_seconds": round(summary["wall_time_s"], 1),  # the steps alone
        "run_seconds": round(run_seconds, 1), "train_cpu_seconds": round(train_cpu_seconds, 1),
        "train_files": train_store.manifest["splits"]["train"]["songs"],
        "params": summary["params"], "final_train_bits_per_target": summary["final_train_loss"] / LN2,
        "run_dir": str(run_dir), "overrides": list(side.get("overrides", [])),
        "resolution": {"ticks_per_beat": side["ticks_per_beat"], "velocity_levels": side["velocity_levels"]},
        "by_folder": {folder: {"total_bits": r["model"]["bits_per_event"] * r["events"], "targets": r["events"]}
                      for folder, r in by_folder.items()},
    }


def score_folder(checkpoint: Path, train_cfg, folder: Path, output: Path, shape: dict) -> dict:
    """The evaluate app on every file of `folder` (split=all), with the run's own codec settings (data.* of
    the training config, root replaced); its unigram baseline comes from the run's training split."""
    from midiformer.evaluate import evaluate

    cfg = compose_config("evaluate", [f"checkpoint={checkpoint}", "split=all", f"device={shape['device']}",
                                      f"batch_size={shape['batch']}", f"output={output}"])
    with open_dict(cfg):
        cfg.data = OmegaConf.merge(train_cfg.data, {"root": str(folder)})
    torch.set_grad_enabled(False)
    try:
        return evaluate(cfg)
    finally:
        torch.set_grad_enabled(True)


# --- MidiTok + the plain GPT ---------------------------------------------------------------------

def run_miditok(side: dict, shape: dict, paths: dict, run_dir: Path) -> dict:
    from plain_gpt import PlainGPT
    from quality_data import make_tokenizer, note_token_ids, token_stream

    from midiformer.train.optim import build_optimizer, build_scheduler

    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(side["codec"], side["options"])
    started = time.perf_counter()
    train_stream = token_stream(tokenizer, Path(paths["train_root"]), paths["train_files"])
    held_out = np.load(Path(paths["work_dir"]) / f"heldout_{side['tokens']}.npy")
    print(f"[{side['name']}] tokenized {len(paths['train_files']) - len(train_stream.failed)} training files: "
          f"{len(train_stream.tokens):,} tokens in {time.perf_counter() - started:.0f} s "
          f"({len(train_stream.failed)} unreadable)", flush=True)

    torch.manual_seed(shape["seed"])
    device = torch.device(shape["device"] if shape["device"] != "auto" else "cpu")
    model = PlainGPT(len(tokenizer), shape["d_model"], shape["layers"], shape["heads"], shape["context"],
                     shape["dropout"]).to(device)
    optim_cfg = compose_config("config", midiformer_overrides({"ticks_per_beat": 96, "velocity_levels": None}, shape,
                                                              Path(paths["train_root"]), Path(paths["cache_dir"]))).optim
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_scheduler(optimizer, optim_cfg, shape["steps"])
    log_every, losses = max(1, shape["steps"] // 20), []
    train_started, cpu_started = time.perf_counter(), time.process_time()
    with open(run_dir / "metrics.jsonl", "w") as metrics:
        for step in range(shape["steps"]):
            batch = token_batch(train_stream, step, shape).to(device)
            loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if optim_cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), optim_cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                raise RuntimeError(f"[{side['name']}] step {step}: training loss is {losses[-1]}")
            if (step + 1) % log_every == 0 or step + 1 == shape["steps"]:
                metrics.write(json.dumps({"step": step + 1, "train/loss": losses[-1]}) + "\n")
                metrics.flush()
    train_seconds = time.perf_counter() - train_started  # batches and steps, as the trainer's wall_time_s
    train_cpu_seconds = time.process_time() - cpu_started
    total_nats = stream_nats(model, held_out, shape["context"], shape["batch"], device)
    targets = len(held_out) - 1
    by_folder = {}
    for folder in paths["source_folders"]:  # each folder's tokens as a stream of its own, scored the same way
        tokens = np.load(Path(paths["work_dir"]) / f"heldout_{side['tokens']}__{folder}.npy")
        by_folder[folder] = {"total_bits": stream_nats(model, tokens, shape["context"], shape["batch"], device) / LN2,
                             "targets": len(tokens) - 1}
    return {
        "total_bits": total_nats / LN2, "targets": targets,
        "unigram_total_bits": unigram_nats(train_stream.tokens, held_out, len(tokenizer)) / LN2,
        "notes_coded": int(np.isin(held_out, note_token_ids(tokenizer)).sum()), "vocab": len(tokenizer),
        "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(train_cpu_seconds, 1),
        "train_files": len(paths["train_files"]) - len(train_stream.failed),
        "train_files_unreadable": train_stream.failed, "train_tokens": int(len(train_stream.tokens)),
        "params": sum(p.numel() for p in model.parameters()), "final_train_bits_per_target": losses[-1] / LN2,
        "codec": side["codec"], "tokenizer_options": {k: str(v) for k, v in side["options"].items()},
        "by_folder": by_folder,
    }


def token_batch(stream, step: int, shape: dict) -> torch.Tensor:
    """The windows (batch, context + 1) of `step`, drawn as midiformer's train_batch draws its windows: a
    generator seeded by (seed, step), uniform starts with a share snapped to a song's first token."""
    from midiformer.data.dataset import window_starts

    rng = np.random.default_rng([shape["seed"], step])
    starts = window_starts(stream.offsets, len(stream.tokens), rng, shape["batch"], shape["context"])
    return torch.from_numpy(np.stack([stream.tokens[start:start + shape["context"] + 1] for start in starts]))


@torch.no_grad()
def stream_nats(model: torch.nn.Module, tokens: np.ndarray, context: int, batch: int, device: torch.device) -> float:
    """Summed nats of every token but the first, in non-overlapping windows of `context` predictions
    (window k reads tokens [kT, kT + T) and predicts [kT + 1, kT + T]), as midiformer's evaluate does."""
    model.eval()
    n_windows = -(-(len(tokens) - 1) // context)
    windows = np.full((n_windows, context + 1), -100, dtype=np.int64)
    for k in range(n_windows):
        piece = tokens[k * context:k * context + context + 1]
        windows[k, :len(piece)] = piece
    total = 0.0
    for first in range(0, n_windows, batch):
        rows = torch.from_numpy(windows[first:first + batch]).to(device)
        logits = model(rows[:, :-1].clamp(min=0))
        total += F.cross_entropy(logits.flatten(0, 1).double(), rows[:, 1:].flatten(), ignore_index=-100,
                                 reduction="sum").item()
    model.train()
    return total


def unigram_nats(train_tokens: np.ndarray, held_out: np.ndarray, vocab_size: int) -> float:
    """Each held-out token (all but the first) coded with the add-one smoothed token frequencies of the
    training stream: the same baseline as midiformer's unigram_report, per token instead of per field."""
    counts = np.bincount(train_tokens, minlength=vocab_size) + 1.0
    return float(-np.log(counts / counts.sum())[held_out[1:]].sum())
