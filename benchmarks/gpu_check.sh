#!/usr/bin/env bash
# benchmarks/gpu_check.sh — the GPU figures of issue 12 in one command, about 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh                 # writes $OUT (default outputs/gpu_check) and prints a table
#   PYTHON=.venv/bin/python OUT=/tmp/g bash benchmarks/gpu_check.sh
#   MODEL=tiny SEQ_LEN=64 STEPS=4 RUN_SECONDS=10 DEVICE=cpu PRECISIONS=fp32 COMPILES=false bash benchmarks/gpu_check.sh
#                                                # (the last: a smoke run of the script itself on a CPU)
#
# 1. bench_train.py on CUDA: MidiGPT against the plain GPT, model=base at seq_len 1024, fp32 and bf16.
# 2. The real trainer (prefetch thread, device-side losses, fused AdamW) on the dev corpus, model=base,
#    seq_len 1024, for each precision (fp32, bf16-mixed, fp16-mixed) with compile off and on: steady-state
#    events/s, MFU and data-wait fraction, read from the last interval of metrics.jsonl (the first
#    interval, which holds compile's warm-up, is left out).
# 3. A 2-minute bf16-mixed training run on the dev corpus (trainer.max_time): its summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python3}
OUT=${OUT:-outputs/gpu_check}
if [ -z "${MIDIFORMER_DEV_DATA:-}" ]; then  # a checkout beside shared/, a worktree below it, or shared/ inside
  for candidate in ../shared/data/midi_dev ../../shared/data/midi_dev shared/data/midi_dev /work/shared/data/midi_dev; do
    [ -d "$candidate" ] && { MIDIFORMER_DEV_DATA=$(cd "$candidate" && pwd); break; }
  done
fi
DEV=${MIDIFORMER_DEV_DATA:-shared/data/midi_dev}
MODEL=${MODEL:-base}
SEQ_LEN=${SEQ_LEN:-1024}
STEPS=${STEPS:-30}
RUN_SECONDS=${RUN_SECONDS:-120}
DEVICE=${DEVICE:-cuda}
PRECISIONS=${PRECISIONS:-fp32 bf16-mixed fp16-mixed}
COMPILES=${COMPILES:-false true}
mkdir -p "$OUT"
CACHE="$OUT/cache"

"$PYTHON" - <<'EOF'
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda {torch.version.cuda}")
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
EOF
[ -d "$DEV" ] || { echo "error: no dev corpus at $DEV (set MIDIFORMER_DEV_DATA)" >&2; exit 2; }
date -u +"%Y-%m-%d %H:%M UTC"

COMMON=(model="$MODEL" data=midi_dir data.root="$DEV" data.cache_dir="$CACHE" data.seq_len="$SEQ_LEN"
        logger.progress=false logger.tensorboard=false trainer.device="$DEVICE")

echo; echo "== 1. bench_train.py (random data, model=$MODEL, seq_len $SEQ_LEN)"
if [ "$DEVICE" = cuda ]; then
  timeout 150 "$PYTHON" benchmarks/bench_train.py --no-cpu --cuda-preset "$MODEL" --cuda-seq-len "$SEQ_LEN" \
    --steps 5 --rounds 1 || echo "bench_train.py did not finish in 150 s"
else
  echo "skipped (DEVICE=$DEVICE)"
fi

echo; echo "== 2. the trainer on the dev corpus: $STEPS steps each"
"$PYTHON" -m midiformer.prepare data=midi_dir data.root="$DEV" data.cache_dir="$CACHE" | tail -1
for precision in $PRECISIONS; do
  for compile in $COMPILES; do
    run="$OUT/speed-$precision-compile-$compile"
    rm -rf "$run"
    timeout 240 "$PYTHON" -m midiformer.train "${COMMON[@]}" trainer/precision="$precision" trainer.compile="$compile" \
      trainer.max_steps="$STEPS" trainer.log_every=$(( STEPS / 3 > 0 ? STEPS / 3 : 1 )) trainer.val_every=0 \
      trainer.val_batches=1 trainer.ckpt_every=0 hydra.run.dir="$run" > "$run.log" 2>&1 \
      || echo "$precision compile=$compile: failed or past 240 s, see $run.log"
  done
done
"$PYTHON" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
print(f"{'precision':12} {'compile':8} {'events/s':>10} {'MFU':>7} {'data wait':>10}")
for run in sorted(Path(sys.argv[1]).glob("speed-*")):
    if not run.is_dir():
        continue
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").exists() else []
    last = [m for m in lines if "events_per_s" in m][-1:] or [{}]
    m = last[0]
    precision, compile_ = run.name.removeprefix("speed-").split("-compile-")
    mfu = f"{m['mfu']:.1%}" if m.get("mfu") is not None else "n/a"
    wait = f"{m['data_wait_fraction']:.1%}" if "data_wait_fraction" in m else "n/a"
    print(f"{precision:12} {compile_:8} {m.get('events_per_s', float('nan')):10.0f} {mfu:>7} {wait:>10}")
EOF

echo; echo "== 3. a ${RUN_SECONDS}-second bf16-mixed training run on the dev corpus"
run="$OUT/two_minutes"
rm -rf "$run"
precision=bf16-mixed; [ "$DEVICE" = cuda ] || precision=fp32
timeout $(( RUN_SECONDS + 120 )) "$PYTHON" -m midiformer.train "${COMMON[@]}" trainer/precision=$precision \
  trainer.max_steps=100000 trainer.max_time="$RUN_SECONDS" trainer.val_every=0 hydra.run.dir="$run" > "$run.log" 2>&1 \
  || echo "the timed run failed, see $run.log"
"$PYTHON" - "$run/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
keys = ("status", "steps", "wall_time_s", "events_per_s", "mfu", "data_wait_fraction", "startup_s",
        "final_val_bits_per_event", "device")
print({k: s.get(k) for k in keys})
print("unigram baseline bits/event:", s["unigram_baseline"].get("unigram/val/bits_per_event"))
EOF
date -u +"%Y-%m-%d %H:%M UTC"
