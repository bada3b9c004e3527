#!/bin/bash
# The whole device run, in one command: environment, attention timings and memory, the math
# backend's out-of-memory scan, roofline timings, then ncu (one call per config) and the
# CSVs made from its tables. Each stage has a time limit, so the command ends inside 10 min;
# everything lands in $OUT/results.tar.gz and the CSVs in $OUT.
#   bash benchmarks/gpu/run_all.sh          (from the folder that holds benchmarks/)
set -u
OUT=${OUT:-/tmp/gpu_out}
W=${WORK:-${TMPDIR:-/tmp}/gpu_work}
mkdir -p "$W" "$OUT"
export PYTHONUNBUFFERED=1
START=$(date +%s)
BUDGET=${BUDGET:-560}
left() { echo $((BUDGET - ($(date +%s) - START))); }
PY=${PY:-python3}
X=${DRY_RUN:+--dry-run}   # DRY_RUN=1: the same flow on CPU, tiny sizes (needs an ncu on PATH)
nvidia-smi > "$W/nvidia_smi.txt" 2>&1
$PY -m benchmarks.gpu.env "$W/env.json" $X
timeout 200 $PY -m benchmarks.gpu.attention --mode time --out "$W" $X > "$W/attention_time.log" 2>&1
echo "attention time rc=$? at $(( $(date +%s) - START )) s"; tail -3 "$W/attention_time.log"
timeout 100 $PY -m benchmarks.gpu.roofline --mode time --out "$W" $X > "$W/roofline_time.log" 2>&1
echo "roofline time rc=$? at $(( $(date +%s) - START )) s"; tail -3 "$W/roofline_time.log"
M=dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum,gpu__time_duration.sum
prof() {   # tag, seconds, command...
  local tag=$1 t=$2; shift 2
  if [ "$(left)" -lt $((t / 2 + 15)) ]; then echo "skip $tag: $(left) s left"; return; fi
  [ "$t" -gt "$(left)" ] && t=$(left)
  timeout "$t" ncu --profile-from-start off --clock-control none --metrics $M -f -o "$W/$tag" \
    "$@" --tag "$tag" --out "$W" $X > "$W/$tag.ncu.log" 2>&1
  echo "$tag rc=$? at $(( $(date +%s) - START )) s"
  ncu --import "$W/$tag.ncu-rep" --csv --page raw --print-units base > "$W/$tag.csv" 2>> "$W/$tag.ncu.log"
}
for d in ${DS:-64 128}; do
  for b in flash math; do
    prof attention_d${d}_$b 120 $PY -m benchmarks.gpu.attention --mode profile --d $d --backend $b
  done
done
prof roofline 90 $PY -m benchmarks.gpu.roofline --mode profile
$PY -m benchmarks.gpu.collect --dir "$W" --env "$W/env.json" --name attention_dram \
  --tags attention_d64_flash,attention_d64_math,attention_d128_flash,attention_d128_math
$PY -m benchmarks.gpu.collect --dir "$W" --env "$W/env.json" --name roofline_dram --tags roofline
rm -f "$W"/*.ncu-rep.tmp
tar czf "$OUT/results.tar.gz" -C "$W" .
for f in attention_time attention_oom roofline_time attention_dram attention_dram_kernels roofline_dram; do
  [ -f "$W/$f.csv" ] && cp "$W/$f.csv" "$OUT/"
done
ls -la "$OUT"; echo "total $(( $(date +%s) - START )) s"
for f in attention_time attention_oom roofline_time attention_dram roofline_dram; do
  echo "== $f"; grep -v '^#' "$W/$f.csv" 2>/dev/null | cut -c1-160
done
