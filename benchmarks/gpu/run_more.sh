#!/bin/bash
# The second device run: roofline timings again with CUDA-graph replays beside the Python
# launches, ncu over every matmul size, and the math backend with bf16 scores
# (allow_fp16_bf16_reduction_math_sdp) at d = 64. Results in $OUT.
set -u
OUT=${OUT:-/tmp/gpu_out}
W=${WORK:-${TMPDIR:-/tmp}/gpu_work}
mkdir -p "$W" "$OUT"
export PYTHONUNBUFFERED=1
START=$(date +%s)
PY=${PY:-python3}
X=${DRY_RUN:+--dry-run}
$PY -m benchmarks.gpu.env "$W/env.json" $X
timeout 150 $PY -m benchmarks.gpu.roofline --mode time --out "$W" $X > "$W/roofline_time.log" 2>&1
echo "roofline time rc=$? at $(( $(date +%s) - START )) s"; tail -3 "$W/roofline_time.log"
M=dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum,gpu__time_duration.sum
NCU="ncu --profile-from-start off --clock-control none --metrics $M -f"
timeout 150 $NCU -o "$W/roofline" $PY -m benchmarks.gpu.roofline --mode profile --tag roofline \
  --out "$W" $X > "$W/roofline.ncu.log" 2>&1
echo "roofline profile rc=$?"
timeout 150 $NCU -o "$W/attention_d64_mathbf16" $PY -m benchmarks.gpu.attention --mode profile \
  --d 64 --backend math --bf16-reduction --tag attention_d64_mathbf16 --out "$W" $X \
  > "$W/attention_d64_mathbf16.ncu.log" 2>&1
echo "attention bf16 profile rc=$?"
for t in roofline attention_d64_mathbf16; do
  ncu --import "$W/$t.ncu-rep" --csv --page raw --print-units base > "$W/$t.csv" 2>> "$W/$t.ncu.log"
done
$PY -m benchmarks.gpu.collect --dir "$W" --env "$W/env.json" --name roofline_dram --tags roofline
$PY -m benchmarks.gpu.collect --dir "$W" --env "$W/env.json" --name attention_dram_bf16_scores \
  --tags attention_d64_mathbf16
for f in roofline_time roofline_dram roofline_dram_kernels attention_dram_bf16_scores \
         attention_dram_bf16_scores_kernels; do
  [ -f "$W/$f.csv" ] && cp "$W/$f.csv" "$OUT/"
done
tar czf "$OUT/logs.tar.gz" -C "$W" --exclude='*.ncu-rep' .
for f in roofline_time roofline_dram attention_dram_bf16_scores; do
  echo "== $f"; grep -v '^#' "$W/$f.csv" 2>/dev/null | cut -c1-160
done
echo "total $(( $(date +%s) - START )) s"
