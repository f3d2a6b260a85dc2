#!/usr/bin/env bash
# Issue 20 on a lent GPU machine, in one call of the device tool (at most 10 minutes; call it again to go on): go on
# with the reference bundle's chain of training runs (bench/reference/chain.sh: the full network, OFA's elastic
# stages, the sandwich rule) where the CPU or an earlier call left it, or from the start on a fresh machine, for
# TRAIN_S seconds; then run the CUDA tests and time the GPU benchmarks. Nothing is installed there: the machine's
# image has torch and every package ofakit needs, and ofakit runs from the tree (PYTHONPATH).
#
# The chain NAME (default ref200ta) under WORK has chain.sh's layout and recipes, so that recipe digests match and
# either machine resumes the other's checkpoints; FULL_RECIPE (default recipes/ofa-mbv3-cifar10-full200-ta.yaml, the
# CPU's next chain from 2026-12-07) must be the recipe the chain began with.
#
# Before the call, here, in the repository root:
#   echo /.data/ >> .git/info/exclude; mkdir -p .data; cp ../shared/data/cifar10-jpeg.npz .data/
#   to go on from an earlier call:   cp FILES_AT/chain.tar.* .data/
#   to go on from the CPU chain:     bash bench/reference/gpu_run.sh --pack ~/.cache/ofakit-runs .data
#   (a session's machine may start empty: with no CPU chain and no parts from an earlier call, the chain starts again)
# The call: run(command="bash bench/reference/gpu_run.sh", carry=[".data"], timeout_s=600)
# Back under $OUT: gpu.txt (card, driver, torch), chain.log, chain.tar.NN (the chain's state: its recipes and, of each
# run, run.json, metrics, the last checkpoint, the teacher and the bundle; parts under 16 MiB), cuda-tests.txt,
# elastic_overhead.json, train_throughput.json. To go on with it on the CPU (stop the CPU chain first):
#   cat FILES_AT/chain.tar.* | tar -xf - -C ~/.cache/ofakit-runs, then chain.sh's command
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OFAKIT_SHARED_DATA="$PWD/.data"  # the test split for bench.reference.top1 (there is no ../shared there)
TRAIN_S="${TRAIN_S:-400}"  # seconds of training; the rest of the call is tests, benchmarks and packing
NAME="${NAME:-ref200ta}"
FULL_RECIPE="${FULL_RECIPE:-recipes/ofa-mbv3-cifar10-full200-ta.yaml}"
WORK="${WORK:-/tmp/ofakit-gpu-run}"

pack() {  # pack ROOT DEST: the chain NAME under ROOT as DEST/chain.tar.NN, no more than the chain needs to go on
    local root="$1" dest="$2" run last paths=()
    [ -f "$root/$NAME/full.yaml" ] || { echo "no chain $NAME under $root: nothing to pack"; return 0; }
    paths+=($(cd "$root" && ls -d "$NAME"/*.yaml "$NAME"/*top1.json "$NAME"/extra-teachers 2>/dev/null))
    for run in full el sw; do
        [ -f "$root/$NAME/$run/run.json" ] || continue
        paths+=("$NAME/$run/run.json" "$NAME/$run/metrics.jsonl")
        last=$(cd "$root" && ls -d "$NAME/$run"/checkpoints/step-* 2>/dev/null | tail -n 1)
        if [ -f "$root/$NAME/$run/bundle/bundle.json" ]; then  # finished: its bundle, and the weights el starts from
            paths+=("$NAME/$run/bundle")
            [ "$run" = full ] && [ -n "$last" ] && paths+=("$last/state.json" "$last/model.safetensors")
        else  # under way: its last checkpoint (optimizer state included) and its teacher
            [ -n "$last" ] && paths+=("$last")
            paths+=($(cd "$root" && ls "$NAME/$run/teacher.safetensors" 2>/dev/null))
        fi
    done
    (cd "$root" && tar -cf - "${paths[@]}") | split -b 15m -d - "$dest/chain.tar."
    ls -l "$dest"/chain.tar.*
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
if ls .data/chain.tar.* >/dev/null 2>&1; then
    cat .data/chain.tar.* | tar -xf - -C "$WORK" &&
        echo "resuming from: $(cd "$WORK" && ls -d "$NAME"/*/checkpoints/* "$NAME"/*/bundle 2>/dev/null | tr "\n" " ")"
fi
# a chain that has not reached its elastic run gets the shipped bundle as a candidate teacher beside its full network
# (chain.sh keeps the ensemble only if it wins on the held-out images); SHIPPED_TEACHER=0 leaves extra-teachers/ as is
if [ "${SHIPPED_TEACHER:-1}" = 1 ] && [ ! -e "$WORK/$NAME/el" ] && [ ! -e "$WORK/$NAME/extra-teachers" ]; then
    mkdir -p "$WORK/$NAME/extra-teachers" && cp -r ofakit/bundles/ofa-mbv3-cifar10 "$WORK/$NAME/extra-teachers/shipped"
fi
[ -f "$WORK/ref90-data/cifar10-45k.npz" ] ||
    python3 -m bench.reference.split --data .data/cifar10-jpeg.npz --out "$WORK/ref90-data/cifar10-45k.npz"
# timeout sends SIGTERM to the chain's whole process group: the training run under way ends its step, writes its
# checkpoint and exits; the chain's shell dies at once, so wait for the run before packing
UNTIL=sw timeout --signal=TERM "$TRAIN_S" bash bench/reference/chain.sh "$WORK" "$NAME" "$FULL_RECIPE" \
    >> "$OUT/chain.log" 2>&1
echo "chain exit $? (124: stopped after $TRAIN_S s, at a checkpoint; call again with the tar parts to go on)" \
    >> "$OUT/chain.log"
while pgrep -f "ofakit train --recipe $NAME/" >/dev/null; do sleep 1; done
for run in full el sw; do  # where each run stands: step, pace on this card, time left, evaluations
    [ -f "$WORK/$NAME/$run/run.json" ] && python3 -m ofakit status "$WORK/$NAME/$run" >> "$OUT/chain.log" 2>&1
done
pack "$WORK" "$OUT"
timeout 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests > "$OUT/cuda-tests.txt" 2>&1
echo "pytest exit $?" >> "$OUT/cuda-tests.txt"
timeout 60 python3 -m bench.elastic_overhead --device cuda --bf16 --channels-last > "$OUT/elastic_overhead.json" 2>&1
timeout 60 python3 -m bench.train_throughput --device cuda > "$OUT/train_throughput.json" 2>&1
exit 0
