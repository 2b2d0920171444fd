"""Generation speed with and without the KV cache: events/s, the `small` preset at context 1024, CPU.

    make bench-generate                      # or: python benchmarks/bench_generate.py --threads 2

One model (random weights: speed does not depend on them; allow_end=False so that no sample stops
early), one seed, one run per path, from a START row to a full 1024-event context, on one CPU
thread unless --threads says otherwise. The cached path runs one new event through the blocks per
step; the uncached one recomputes the whole window every step. Both must give the same events
(printed). Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from midiformer.generate import primer
from midiformer.generate.sampling import Settings, sample
from midiformer.model import MidiGPT

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def small_model(context: int) -> MidiGPT:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["model=small", f"model.max_seq_len={context}"])
    torch.manual_seed(0)
    return MidiGPT(cfg.model).eval()


def timed_sample(model: MidiGPT, n_events: int, kv_cache: bool, seed: int) -> tuple[np.ndarray, float]:
    settings = Settings(n_events=n_events, kv_cache=kv_cache, allow_end=False)
    start = time.perf_counter()
    (result,) = sample(model, primer.start_row(), settings, seed=seed)
    return result.rows, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=1024, help="model.max_seq_len")
    parser.add_argument("--events", type=int, default=None, help="events to sample (default: fill the context)")
    parser.add_argument("--threads", type=int, default=1,  # on a shared 2-core machine, two threads make the
                        help="torch CPU threads; 0 = PyTorch's default")  # small cached steps wait for each other
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_events = args.events or args.context - 1  # the START row plus n_events fill the context exactly
    model = small_model(args.context)
    print(f"small preset, {model.num_params() / 1e6:.2f}M parameters, context {args.context}, "
          f"{n_events} events from a START row, CPU, torch threads: {torch.get_num_threads()}, seed {args.seed}")
    rows, speed = {}, {}
    for kv_cache in (True, False):
        rows[kv_cache], seconds = timed_sample(model, n_events, kv_cache, args.seed)
        speed[kv_cache] = len(rows[kv_cache]) / seconds
        print(f"  kv_cache={str(kv_cache).lower():5}  {len(rows[kv_cache])} events in {seconds:7.2f} s  "
              f"{speed[kv_cache]:8.1f} events/s")
    print(f"speed-up {speed[True] / speed[False]:.1f}x (target >= 10x); "
          f"same events in both paths: {np.array_equal(rows[True], rows[False])}")

if __name__ == "__main__":
    main()
