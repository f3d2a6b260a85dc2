#!/usr/bin/env bash
# Issue 20 on a lent GPU machine, in one call of the device tool (at most 10 minutes; call it again to go on):
# go on with the reference bundle's chain of runs where the CPU left it (or an earlier call; from the start on a fresh
# machine), then run the CUDA tests and time the GPU benchmarks. Nothing is installed there: the machine's image has
# torch and every package ofakit needs, and ofakit runs from the tree (PYTHONPATH).
#
# The chain (each run a folder beside ref90-data/, as on the CPU, so recipe digests match and either machine resumes
# the other's checkpoints):
#   ref90     recipes/ofa-mbv3-cifar10-long.yaml, stopped once its full stage has ended (its checkpoint of that
#             stage's end, step FULL_END, is kept)
#   ref90-el  recipes/ofa-mbv3-cifar10-elastic.yaml, init that checkpoint
#   ref90-sw  recipes/ofa-mbv3-cifar10-sandwich.yaml, init ref90-el/bundle
# Each call trains the first unfinished run for what is left of TRAIN_S, then the next.
#
# Before the call, here, in the repository root:
#   echo /.data/ >> .git/info/exclude; mkdir -p .data; cp ../shared/data/cifar10-jpeg.npz .data/
#   to go on from an earlier call:   cp FILES_AT/ref90-run.tar.* .data/
#   to go on from the CPU runs:      bash bench/reference/gpu_run.sh --pack ~/.cache/ofakit-runs .data
#   (a session's machine starts empty: with no CPU runs and no parts from an earlier call, the chain starts again)
# The call: run(command="bash bench/reference/gpu_run.sh", carry=[".data"], timeout_s=600)
# Back under $OUT: gpu.txt (card, driver, torch), train.log (the run's last metrics), ref90-run.tar.NN (the chain's
# state: run.json, metrics, the last checkpoint (run 1: its full stage's end), the teacher and the bundle of each
# run; parts under 16 MiB), cuda-tests.txt, elastic_overhead.json, train_throughput.json.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
TRAIN_S="${TRAIN_S:-400}"  # seconds of training; the rest of the call is tests, benchmarks and packing
FULL_END="${FULL_END:-42120}"  # the long recipe's full stage ends there: 120 epochs of 45,000 // 128 steps
FULL="ref90/checkpoints/step-$(printf %08d "$FULL_END")"  # run 2 starts from it
WORK="${WORK:-/tmp/ofakit-gpu-run}"
REPO="$PWD"

pack() {  # pack ROOT DEST: the chain's state under ROOT as DEST/ref90-run.tar.NN
    local root="$1" dest="$2" run paths=()
    for run in ref90 ref90-el ref90-sw; do
        [ -f "$root/$run/run.json" ] || continue
        paths+=("$run/run.json" "$run/metrics.jsonl")
        if [ "$run" = ref90 ] && [ -f "$root/$FULL/state.json" ]; then
            paths+=("$FULL")  # run 1 counts up to its full stage's end
        else
            paths+=($(cd "$root" && ls -d "$run"/checkpoints/step-* 2>/dev/null | tail -1))
        fi
        paths+=($(cd "$root" && ls -d "$run/teacher.safetensors" "$run/bundle" 2>/dev/null))
    done
    [ ${#paths[@]} -gt 0 ] || { echo "nothing to pack under $root"; return 0; }
    (cd "$root" && tar -cf - "${paths[@]}") | split -b 15m -d - "$dest/ref90-run.tar."
    ls -l "$dest"/ref90-run.tar.*
}

train() {  # train RUN RECIPE SECONDS [--set ...]: one run of the chain, stopped after SECONDS
    local run="$1" recipe="$2" seconds="$3" name
    shift 3
    name="$(basename "$recipe" .yaml | sed 's/ofa-mbv3-cifar10-//').yaml"
    cp "$recipe" "$WORK/ref90-data/$name"
    (cd "$WORK" && timeout --signal=TERM "$seconds" python3 -m ofakit train --recipe "ref90-data/$name" --out "$run" \
        --set data=ref90-data/cifar10-45k.npz "$@" --quiet) >> "$OUT/train.log" 2>&1
    echo "train $run exit $? (124 or 130: stopped after $seconds s, at a checkpoint; resume with the tar parts)" >> "$OUT/train.log"
    tail -n 3 "$WORK/$run/metrics.jsonl" >> "$OUT/train.log" 2>/dev/null
}

left() { echo $(( TRAIN_S - SECONDS )); }

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
    cat .data/ref90-run.tar.* | tar -xf - -C "$WORK" && echo "resuming from: $(cd "$WORK" && ls -d ref90*/checkpoints/* ref90*/bundle 2>/dev/null | tr "\n" " ")"
fi
[ -f "$WORK/ref90-data/cifar10-45k.npz" ] ||
    python3 -m bench.reference.split --data .data/cifar10-jpeg.npz --out "$WORK/ref90-data/cifar10-45k.npz"
SECONDS=0
if [ ! -f "$WORK/$FULL/state.json" ]; then  # run 1 until its full stage ends
    train ref90 recipes/ofa-mbv3-cifar10-long.yaml "$(left)" &
    while kill -0 $! 2>/dev/null && [ ! -f "$WORK/$FULL/state.json" ]; do sleep 5; done
    [ -f "$WORK/$FULL/state.json" ] && sleep 5 && pkill -TERM -f "ofakit train --recipe ref90-data/long.yaml"
    wait
fi
if [ -f "$WORK/$FULL/state.json" ] && [ ! -f "$WORK/ref90-el/bundle/bundle.json" ] && [ "$(left)" -gt 30 ]; then
    train ref90-el recipes/ofa-mbv3-cifar10-elastic.yaml "$(left)" --set init="$FULL"
fi
if [ -f "$WORK/ref90-el/bundle/bundle.json" ] && [ "$(left)" -gt 30 ]; then
    train ref90-sw recipes/ofa-mbv3-cifar10-sandwich.yaml "$(left)" --set init=ref90-el/bundle
fi
pack "$WORK" "$OUT"
cd "$REPO"
timeout 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests > "$OUT/cuda-tests.txt" 2>&1
echo "pytest exit $?" >> "$OUT/cuda-tests.txt"
timeout 60 python3 -m bench.elastic_overhead --device cuda --bf16 --channels-last > "$OUT/elastic_overhead.json" 2>&1
timeout 60 python3 -m bench.train_throughput --device cuda > "$OUT/train_throughput.json" 2>&1
exit 0
