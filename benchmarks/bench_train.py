"""Training speed of MidiGPT against a plain one-token GPT of the same depth, width and sequence length.

    make bench-train                     # CPU, fp32, the `small` preset, 2 threads
    python benchmarks/bench_train.py --threads 4 --steps 20

A step is forward + masked loss + backward + AdamW on random data of the right shapes. The plain GPT
(plain_gpt.py, shared with bench-quality) reuses MidiGPT's Block, so only the embedding (one table
instead of one per field) and the head (one softmax over a REMI-sized vocabulary instead of one per
field) differ. Target: MidiGPT >= 0.9x.
Where CUDA is present it also prints fp32 vs bf16-mixed step time and model FLOPs utilisation.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from plain_gpt import PlainGPT
from torch import nn

from midiformer.codec import events
from midiformer.model import (
    MidiGPT,
    configure_optimizer_groups,
    loss_from,
    masked_field_losses,
)
from midiformer.train.throughput import flops_per_event, peak_flops

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def model_config(preset: str, heads: str):
    cfg = OmegaConf.load(CONF / f"{preset}.yaml")
    cfg.norm = OmegaConf.load(CONF / "norm" / "layernorm.yaml")
    cfg.init = {"name": "pytorch"}
    cfg.heads = heads
    cfg.ticks_per_beat = 96  # ${data.codec.ticks_per_beat} in the apps
    return cfg


def random_events(batch: int, length: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and masked targets (B, T, F): random types, fields that do not apply set to IGNORE."""
    rows = torch.stack([torch.randint(0, size, (batch, length + 1)) for size in events.VOCAB.values()], dim=-1)
    applies = torch.from_numpy(events.APPLIES)[rows[..., 0]]
    masked = rows.masked_fill(~applies, events.IGNORE)
    return rows[:, :-1].to(device), masked[:, 1:].to(device)


def midi_step(model: MidiGPT, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch
    return loss_from(*masked_field_losses(model(inputs, targets), targets))


def plain_step(model: PlainGPT, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


def step_times(model: nn.Module, loss_fn, batch, steps: int, precision: str) -> list[float]:
    """Seconds per training step (forward, loss, backward, AdamW), after two warm-up steps."""
    optimizer = torch.optim.AdamW(configure_optimizer_groups(model, 0.1), lr=1e-4, fused=batch_device(batch) == "cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
    times = []
    for i in range(steps + 2):
        synchronize()
        start = time.perf_counter()
        with autocast:
            loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return times


def batch_device(batch) -> str:
    return (batch[0] if isinstance(batch, tuple) else batch).device.type


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def compare(args, preset: str, device: str, precision: str) -> dict[str, float]:
    """Median step time of MidiGPT (parallel and cascade heads) and the plain GPT, measured in turns."""
    torch.manual_seed(0)
    cfg = model_config(preset, "parallel")
    seq_len = min(args.seq_len, cfg.max_seq_len)
    models = {
        "MidiGPT parallel": (MidiGPT(cfg).to(device), midi_step, random_events(args.batch_size, seq_len, device)),
        "MidiGPT cascade": (MidiGPT(model_config(preset, "cascade")).to(device), midi_step, random_events(args.batch_size, seq_len, device)),
        "plain GPT": (
            PlainGPT(args.vocab, cfg.d_model, cfg.n_layer, cfg.n_head, cfg.max_seq_len, cfg.dropout).to(device),
            plain_step, torch.randint(0, args.vocab, (args.batch_size, seq_len + 1), device=device),
        ),
    }
    times = {name: [] for name in models}
    for _ in range(args.rounds):  # turns, so that a busy neighbour on the machine slows all alike
        for name, (model, loss_fn, batch) in models.items():
            times[name] += step_times(model, loss_fn, batch, args.steps, precision)
    events_per_step = args.batch_size * seq_len
    print(f"\n{preset} preset on {device}, {precision}: d_model {cfg.d_model}, {cfg.n_layer} layers, "
          f"{cfg.n_head} heads, batch {args.batch_size} x {seq_len} events, plain vocab {args.vocab}")
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, seconds in medians.items():
        params = sum(p.numel() for p in models[name][0].parameters())
        ratio = medians["plain GPT"] / seconds
        print(f"  {name:17s} {params / 1e6:6.2f}M params  {seconds * 1e3:8.1f} ms/step  "
              f"{events_per_step / seconds:9.0f} events/s  {ratio:5.2f}x plain")
    # the trainer's MFU convention (midiformer.train.throughput): 6N + 12·L·d·T per event
    medians["flops_per_step"] = events_per_step * flops_per_event(models["MidiGPT parallel"][0], cfg.n_layer,
                                                                  cfg.d_model, seq_len)
    return medians


def cuda_report(args) -> None:
    name = torch.cuda.get_device_name()
    peak = peak_flops(None, torch.device("cuda"))
    results = {p: compare(args, args.cuda_preset, "cuda", p) for p in ("fp32", "bf16-mixed")}
    print(f"\n{name}: MidiGPT parallel, {args.cuda_preset} preset")
    for precision, medians in results.items():
        seconds = medians["MidiGPT parallel"]
        achieved = medians["flops_per_step"] / seconds
        mfu = f"MFU {achieved / peak:6.1%} of {peak / 1e12:.0f} TFLOP/s bf16 peak" if peak else "peak unknown"
        print(f"  {precision:10s} {seconds * 1e3:8.1f} ms/step  {achieved / 1e12:7.1f} TFLOP/s  {mfu}")
    print(f"  bf16-mixed speed-up over fp32: {results['fp32']['MidiGPT parallel'] / results['bf16-mixed']['MidiGPT parallel']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="conf/model preset for the CPU comparison")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the main job's 2 cores)")
    parser.add_argument("--vocab", type=int, default=400, help="the plain GPT's vocabulary (REMI: ~300-500)")
    parser.add_argument("--cuda-preset", default="base")
    parser.add_argument("--cuda-batch-size", type=int, default=16)
    parser.add_argument("--cuda-seq-len", type=int, default=1024)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU comparison")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if not args.no_cpu:
        compare(args, args.preset, "cpu", "fp32")
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        args.batch_size, args.seq_len = args.cuda_batch_size, args.cuda_seq_len
        cuda_report(args)


if __name__ == "__main__":
    main()
