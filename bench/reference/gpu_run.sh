#!/usr/bin/env bash
# Issue 20 on a lent GPU machine, in one call of the device tool (at most 10 minutes; call it again to go on):
# train the reference bundle's long recipe (resuming whatever an earlier call, or the CPU run, brought along), then
# run the CUDA tests and time the GPU benchmarks. Nothing is installed there: the machine's image has torch and every
# package ofakit needs, and ofakit runs from the tree (PYTHONPATH).
#
# Before the call, here, in the repository root:
#   echo /.data/ >> .git/info/exclude; mkdir -p .data; cp ../shared/data/cifar10-jpeg.npz .data/
#   to go on from an earlier call:   cp FILES_AT/ref90-run.tar.* .data/
#   to go on from the CPU run:       bash bench/reference/gpu_run.sh --pack ~/.cache/ofakit-runs .data
# The call: run(command="bash bench/reference/gpu_run.sh", carry=[".data"], timeout_s=600)
# Back under $OUT: gpu.txt (card, driver, torch), train.log (the run's last metrics), ref90-run.tar.NN (the run
# directory: run.json, metrics, the last checkpoint, the teacher, the bundle once finished; parts under 16 MiB),
# cuda-tests.txt, elastic_overhead.json, train_throughput.json.
#
# The run directory keeps the CPU run's layout (ref90/ beside ref90-data/, data given by the same relative path),
# so the recipe's digest is the same and either machine resumes the other's checkpoints.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
RECIPE="${RECIPE:-recipes/ofa-mbv3-cifar10-long.yaml}"
TRAIN_S="${TRAIN_S:-400}"  # seconds of training; the rest of the call is tests, benchmarks and packing
WORK="${WORK:-/tmp/ofakit-gpu-run}"
REPO="$PWD"

pack() {  # pack ROOT DEST: ROOT/ref90's state (no older checkpoints, no lock) as DEST/ref90-run.tar.NN
    local root="$1" dest="$2" last
    last=$(cd "$root" && ls -d ref90/checkpoints/step-* 2>/dev/null | tail -1)
    (cd "$root" && tar -cf - ref90/run.json ref90/metrics.jsonl $last \
        $(cd "$root" && ls -d ref90/teacher.safetensors ref90/bundle 2>/dev/null)) |
        split -b 15m -d - "$dest/ref90-run.tar."
    ls -l "$dest"/ref90-run.tar.*
}

if [ "${1:-}" = "--pack" ]; then
    pack "$2" "$3"
    exit $?
fi
OUT="${OUT:?OUT names the folder that comes back}"
mkdir -p "$WORK/ref90-data"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
              torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA DEVICE')"; } | tee "$OUT/gpu.txt"
if ls .data/ref90-run.tar.* >/dev/null 2>&1; then
    cat .data/ref90-run.tar.* | tar -xf - -C "$WORK" && echo "resuming from $(ls -d "$WORK"/ref90/checkpoints/*)"
fi
[ -f "$WORK/ref90-data/cifar10-45k.npz" ] ||
    python3 -m bench.reference.split --data .data/cifar10-jpeg.npz --out "$WORK/ref90-data/cifar10-45k.npz"
cp "$RECIPE" "$WORK/ref90-data/recipe.yaml"
(cd "$WORK" && timeout --signal=TERM "$TRAIN_S" python3 -m ofakit train --recipe ref90-data/recipe.yaml --out ref90 \
    --set data=ref90-data/cifar10-45k.npz --quiet) > "$OUT/train.log" 2>&1
echo "train exit $? (124: stopped at TRAIN_S=$TRAIN_S s; resume with the tar parts)" >> "$OUT/train.log"
tail -n 5 "$WORK/ref90/metrics.jsonl" >> "$OUT/train.log"
pack "$WORK" "$OUT"
cd "$REPO"
timeout 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests > "$OUT/cuda-tests.txt" 2>&1
echo "pytest exit $?" >> "$OUT/cuda-tests.txt"
timeout 60 python3 -m bench.elastic_overhead --device cuda --bf16 --channels-last > "$OUT/elastic_overhead.json" 2>&1
timeout 60 python3 -m bench.train_throughput --device cuda > "$OUT/train_throughput.json" 2>&1
exit 0
