#!/usr/bin/env bash
# Every GPU figure of the book in one command, under 9 minutes on one H100/H200 (issue 14).
#
#   scripts/gpu_suite.sh OUT_FOLDER            # then: python scripts/collect_gpu_results.py OUT_FOLDER
#   scripts/gpu_suite.sh --dry-run OUT_FOLDER  # print the parts and their commands; run nothing
#
# Limits: 50 + 70 + 270 + 110 s, plus 10 s of kill grace each = 540 s at most.
# Parts, each with its own time limit, each writing into OUT_FOLDER as it goes (fail soft: a part that
# fails or runs out of time leaves what it wrote, and the next part still runs):
#   1. correctness: benchmarks/gpu_check_model.py (BASE, bf16, SDPA vs eager, padding)     -> gpu_check.json
#   2. the loop: benchmarks/gpu_check_loop.py (no host-device sync inside a Trainer step,
#      torch.cuda.set_sync_debug_mode("error"))                                            -> gpu_check_loop.json
#   3. the benchmark: BASE seq 128, transformers vs minibert lever by lever, the real Trainer
#      (bench_pretrain_gpu.py writes its JSON after every variant)                         -> bench_base128.json
#   4. a short real pre-training run, compiled, on the local corpora                       -> pretrain_compile_metrics.jsonl
# Each part's printed output goes to OUT_FOLDER/<part>_log.txt; OUT_FOLDER/suite.txt says how each ended.
# Needs the data mirror (MINIBERT_DATA) for parts 2-4; run from anywhere.
set -u
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT="${1:?usage: scripts/gpu_suite.sh [--dry-run] OUT_FOLDER}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"
export TQDM_DISABLE=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# part NAME SECONDS COMMAND...: run with a time limit (SIGTERM, then SIGKILL 10 s later), log, record the status.
part() {
  local name="$1" limit="$2"; shift 2
  echo "[$name] limit ${limit}s: $*" | tee -a "$OUT/suite.txt"
  if [ "$DRY" = 1 ]; then return 0; fi
  local start=$SECONDS
  timeout -k 10 "$limit" "$@" > "$OUT/${name}_log.txt" 2>&1
  local rc=$?
  local how="ok"
  if [ $rc = 124 ] || [ $rc = 137 ]; then how="TIME LIMIT"; elif [ $rc != 0 ]; then how="FAILED"; fi
  echo "[$name] $how (exit $rc) after $((SECONDS - start)) s" | tee -a "$OUT/suite.txt"
  tail -n 5 "$OUT/${name}_log.txt"
}

[ "$DRY" = 1 ] || { echo "# scripts/gpu_suite.sh at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%FT%TZ)" > "$OUT/suite.txt"; \
  "$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')" >> "$OUT/suite.txt" 2>&1; }

part check 50 "$PY" benchmarks/gpu_check_model.py --sizes base --out "$OUT/gpu_check.json"
part loop 70 "$PY" benchmarks/gpu_check_loop.py --out "$OUT/gpu_check_loop.json"
part bench 270 "$PY" benchmarks/bench_pretrain_gpu.py --models base --seq-lens 128 --steps 15 --warmup 3 \
  --trainer-documents 500 --out "$OUT/bench_base128.json" \
  --variants hf hf-compile minibert-compile trainer minibert-fused minibert-fused-flash minibert-graphs
part pretrain 110 "$PY" -m minibert.pretrain --config base --batch-size 256 --steps 40 --lr 1e-4 --warmup 10 \
  --dupe-factor 1 --log-every 10 --compile --fused-qkv --checkpoint-minutes 0 --out "$OUT/pretrain_run" --overwrite
[ "$DRY" = 1 ] || { cp "$OUT/pretrain_run/metrics.jsonl" "$OUT/pretrain_compile_metrics.jsonl" 2>/dev/null; \
  rm -f "$OUT/pretrain_run/checkpoint.pt" "$OUT/pretrain_run/model.safetensors"; }   # GBs, not results
echo "done: python scripts/collect_gpu_results.py $OUT   (writes results/pretrain_gpu.json)" | tee -a "$OUT/suite.txt"
