#!/usr/bin/env bash
# The paper's scale on one GPU, within a time budget: G(2,5), N=50, a 6-layer GPT of width 384 with 6 heads,
# batch 256, the authors' 200,000 training and 20,000 test graphs (drawn here, distinct, by seed), forward,
# reverse and teacherless side by side on the one GPU.
#
#   bash scripts/paper_scale.sh [OUT]         # OUT defaults to paper_scale/
#   PAPER_SCALE_TINY=1 bash scripts/paper_scale.sh /tmp/ps   # the same steps at a tiny scale, on the CPU (a test)
#
# 1. prints nvidia-smi and the torch and CUDA versions;
# 2. `nexttok bench --device cuda` at the authors' config (OUT/bench.json: samples/s, MFU against the bf16 peak);
# 3. sizes the three runs from the measured step time so that they end within BUDGET_MINUTES, and trains them
#    concurrently (each process's step slows when three share the GPU: the budget assumes they share it);
# 4. writes OUT/paper_scale.csv (one row per run: config, final metrics, provenance, as `nexttok sweep` writes)
#    and OUT/bench.json. To commit them: OUT/paper_scale.csv -> nexttok/results/paper_scale.csv and OUT/bench.json ->
#    nexttok/results/paper_scale_bench.json; the chapter "At paper scale" reads both.
set -euo pipefail
OUT=${1:-paper_scale}
BUDGET_MINUTES=${BUDGET_MINUTES:-7}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"

if [ -n "${PAPER_SCALE_TINY:-}" ]; then  # the end-to-end check on a CPU: tiny model, few graphs
  DEVICE=cpu; MODEL=(--layers 1 --dim 32 --heads 2); DATA=(--num-nodes 12 --path-len 4 --n-train 512 --n-test 128)
  BUDGET_MINUTES=${BUDGET_MINUTES_TINY:-0.2}; MAX_STEPS=40
else
  DEVICE=cuda; MODEL=(--layers 6 --dim 384 --heads 6); DATA=(--num-nodes 50 --path-len 5 --n-train 200000 --n-test 20000)
  MAX_STEPS=100000
  nvidia-smi || true
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

# 2. the authors' config: speed, FLOPs and MFU
"$PYTHON" -m nexttok bench --device "$DEVICE" "${MODEL[@]}" --deg 2 "${DATA[@]:0:4}" --batch-size 256 \
  --positions learned --train-steps 20 --json > "$OUT/bench.json"
cat "$OUT/bench.json"

# 3. steps that fit the budget, three runs sharing the device, at the measured step time (plus 20% for evaluations)
STEPS=$("$PYTHON" - "$OUT/bench.json" "$BUDGET_MINUTES" "$MAX_STEPS" <<'EOF'
import json, sys
bench, minutes, cap = json.load(open(sys.argv[1])), float(sys.argv[2]), int(sys.argv[3])
step_s = bench["train_step_ms"] / 1000 * 3 * 1.2
print(max(10, min(cap, int(minutes * 60 / step_s) // 10 * 10)))
EOF
)
EVAL=$(( STEPS / 10 > 0 ? STEPS / 10 : 1 ))
WARMUP=$(( STEPS / 20 ))
echo "training $STEPS steps per run (budget $BUDGET_MINUTES minutes, evaluation every $EVAL steps)"
pids=()
for mode in forward reverse teacherless; do
  "$PYTHON" -m nexttok train --device "$DEVICE" "${MODEL[@]}" --deg 2 "${DATA[@]}" --batch-size 256 --lr 1e-4 \
    --positions learned --mode "$mode" --steps "$STEPS" --warmup "$WARMUP" --eval-every "$EVAL" \
    --ckpt-every "$EVAL" --quiet --out "$OUT/runs/$mode" > "$OUT/$mode.json" 2> "$OUT/$mode.log" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
[ "$status" -eq 0 ] || { echo "a run failed (see $OUT/*.log)"; tail -n 5 "$OUT"/*.log; exit "$status"; }

# 4. the table, with each run's provenance
"$PYTHON" - "$OUT" <<'EOF'
import sys
from pathlib import Path
from nexttok.records import RunRecord, write_table

out = Path(sys.argv[1])
rows = [RunRecord.load(out / "runs" / mode).row() for mode in ("forward", "reverse", "teacherless")]
write_table(rows, out / "paper_scale.csv")
for r in rows:
    print(f"{r['mode']:>11}: gen_accuracy {r['gen_accuracy']:.3f}, teacher-forced by position "
          f"{[round(r[f'tf_token_accuracy_{i}'], 3) for i in range(1, r['path_len'] + 1)]}, {r['train_seconds']:.0f} s")
print(f"wrote {out / 'paper_scale.csv'}")
EOF
