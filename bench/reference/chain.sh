#!/usr/bin/env bash
# Issue 20: the reference bundle's whole chain in one background command that picks up where it stopped.
# Every step runs only when its output is missing, and the training runs resume from their last checkpoints, so after
# any stop (a session's end, a kill, a reboot that kept the folder) the same command goes on.
#
#   cd REPO && setsid nohup bash bench/reference/chain.sh ROOT NAME FULL_RECIPE >> ROOT/NAME.log 2>&1 &
#
# ROOT         the runs' folder (e.g. ~/.cache/ofakit-runs), holding ref90-data/cifar10-45k.npz (made by
#              `python -m bench.reference.split` when missing)
# NAME         this chain's folder under ROOT
# FULL_RECIPE  a recipe with one stage, the full network (e.g. recipes/ofa-mbv3-cifar10-long.yaml less its elastic
#              stages, or the same at more epochs)
#
# Under ROOT/NAME (recipes are copied there on the first start, so that later edits in the repository cannot change a
# run under way; on a later start, a FULL_RECIPE that trains otherwise is refused):
#   full.yaml, elastic.yaml, sandwich.yaml   the chain's recipes (elastic and sandwich from recipes/)
#   full/   the full network              ofakit train FULL_RECIPE
#   full-top1.json                        its test top-1 (bench.reference.top1: all 10,000 images, BN recalibrated)
#   el/     OFA's elastic stages          init: full's last checkpoint
#   sw/     the sandwich rule             init: el/bundle; its largest subnet distils from full/bundle too
#                                         (kd_weight 1.0: measured neutral with a teacher no better than the
#                                         sandwich's own end, 87.58/79.93 % against 87.37/80.08 %; the full
#                                         network is ~2 points better than the elastic stages' largest)
#   extra-teachers/  optional, put there by a person before el starts: bundles (e.g. extra-teachers/ref90-sw, a copy
#                    of an earlier reference run's bundle) whose largest subnets join the full network as el's and
#                    sw's teacher, an ensemble (the mean of their softmaxes), if it beats the full network alone on
#                    the split's 5,000 held-out images (teacher-heldout-top1.json); the runs refuse a change once begun
#   bundle/ the candidate bundle          bench.reference.package, then `ofakit predictor fit` on it
#   front.json, front.png                 bench.reference.front on the candidate (a timing: rerun it on a quiet
#                                         machine before quoting it)
# Nothing in the repository is written: shipping the candidate is a person's call (copy bundle/ over
# ofakit/bundles/ofa-mbv3-cifar10 when it beats the shipped one). `python3` must have ofakit's dependencies (the
# project's virtual environment active); ofakit itself runs from this repository (`python3 -m ofakit`).
# Where a training run of the chain stands (stage, epoch, pace, time left): `python3 -m ofakit status ROOT/NAME/full`
# (or el, sw).
# Pause the chain with `kill -STOP -- -PGID` while timing anything else (setsid makes the chain's shell the group
# leader, so PGID is its pid), and `kill -CONT -- -PGID` after.
# UNTIL=sw stops the chain once its training runs are done: bench/reference/gpu_run.sh runs it so on a GPU, under a
# time limit, with the same layout and recipes, so that either machine resumes the other's runs.
# Smaller settings for a trial of the script itself: PREDICTOR_ARGS (default `--samples 500 --calibration-batches 8
# --uniform`), FRONT_ARGS (more options for bench.reference.front), and tiny recipes put at ROOT/NAME/elastic.yaml and
# sandwich.yaml before the first start (they are used instead of recipes/'s).
set -euo pipefail

say() { echo "$(date -u +%FT%TZ) chain $NAME: $*"; }

train() {  # train RUN RECIPE [--set ...]: run (or resume) one training run of the chain to its end
    local run="$1" recipe="$2"
    shift 2
    [ -f "$NAME/$run/bundle/bundle.json" ] && return 0
    say "training $run ($recipe)"
    python3 -m ofakit train --recipe "$NAME/$recipe" --out "$NAME/$run" --set data="$DATA" "$@" --quiet
    say "$run finished; its end-of-run evaluation (the recipe's eval_max_batches of the test split):" \
        "$(python3 -c "$LAST_EVAL" "$NAME/$run/metrics.jsonl")"
}

LAST_EVAL='import json, sys
row = [json.loads(line) for line in open(sys.argv[1])][-1]
print("step", row["step"], {name: e["top1"] for name, e in row.get("eval", {}).items()})'

ENSEMBLE_BETTER='import json, sys
top1 = json.load(open(sys.argv[1]))["test_top1"]
sys.exit(0 if top1["ensemble"] > top1["largest"] else 1)'

AGAINST_SHIPPED='import json, sys
bundle, front, shipped, shipped_fronts = sys.argv[1:5]
def top1(path):
    t = json.load(open(path))["metrics"]["test_top1"]
    return "largest %.2f %%, smallest %.2f %%" % (100 * t["largest"], 100 * t["smallest"])
def summary(f):
    return "median gap %+.2f points, %d of %d uniform settings dominated" % (
        f["gap_at_matched_latency_points"]["median"], f["uniform_dominated"], f["uniform_points"])
old = [json.loads(line) for line in open(shipped_fronts)][-1]
print("test top-1 %s, shipped %s; front %s, shipped %s (%s); ship it only if better (see the header)" % (
    top1(bundle), top1(shipped), summary(json.load(open(front))), summary(old), old["date"]))'

CHECK_FULL='import sys
from pathlib import Path
from ofakit.train.config import load_recipe
full, began = sys.argv[1:3]
stages = len(load_recipe(full, []).stages)
if stages != 1:
    sys.exit(f"error: {full} has {stages} stages; the chain'"'"'s first run trains the full network alone")
if Path(began).is_file() and load_recipe(began, []).digest() != load_recipe(full, []).digest():  # comments may differ
    sys.exit(f"error: {full} trains otherwise than {began}, this chain'"'"'s")'

main() {  # the whole script is read before it runs: editing this file under a running chain cannot break it
    ROOT="$(cd "${1:?ROOT}" && pwd)"
    NAME="${2:?NAME}"
    FULL_RECIPE="${3:?FULL_RECIPE}"
    REPO="$(cd "$(dirname "$0")/../.." && pwd)"
    DATA=ref90-data/cifar10-45k.npz
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # python3 -m ofakit / bench... from ROOT

    problem=$(python3 -c "$CHECK_FULL" "$FULL_RECIPE" "$ROOT/$NAME/full.yaml" 2>&1) || { say "$problem"; exit 2; }
    mkdir -p "$ROOT/$NAME"
    [ -f "$ROOT/$NAME/full.yaml" ] || cp "$FULL_RECIPE" "$ROOT/$NAME/full.yaml"
    for part in elastic sandwich; do
        [ -f "$ROOT/$NAME/$part.yaml" ] || cp "$REPO/recipes/ofa-mbv3-cifar10-$part.yaml" "$ROOT/$NAME/$part.yaml"
    done
    cd "$ROOT"
    [ -f "$DATA" ] || python3 -m bench.reference.split --out "$DATA"

    train full full.yaml
    if [ ! -f "$NAME/full-top1.json" ]; then  # the figure to compare with the 120-epoch network's 87.97 %
        say "the full network on the whole test split"
        python3 -m bench.reference.top1 --bundle "$NAME/full/bundle" --calib-data "$DATA" > "$NAME/full-top1.json.tmp"
        mv "$NAME/full-top1.json.tmp" "$NAME/full-top1.json"
        say "$(cat "$NAME/full-top1.json")"
    fi
    # the teacher of el and sw: the full network, or its ensemble with the bundles under NAME/extra-teachers/ when
    # that ensemble is the better on the 5,000 held-out training images (never the test split)
    local teacher="$NAME/full/bundle" extras=() extra el_teacher=()
    for extra in "$NAME"/extra-teachers/*/bundle.json; do
        [ -f "$extra" ] && extras+=("$(dirname "$extra")")
    done
    if [ "${#extras[@]}" -gt 0 ] && [ ! -f "$NAME/teacher-heldout-top1.json" ]; then
        say "the full network and its ensemble with ${extras[*]} on the held-out images"
        python3 -m bench.reference.top1 --bundle "$NAME/full/bundle" --calib-data "$DATA" --test-data "$DATA" \
            --ensemble "${extras[@]}" > "$NAME/teacher-heldout-top1.json.tmp"
        mv "$NAME/teacher-heldout-top1.json.tmp" "$NAME/teacher-heldout-top1.json"
        say "$(cat "$NAME/teacher-heldout-top1.json")"
    fi
    if [ "${#extras[@]}" -gt 0 ] && python3 -c "$ENSEMBLE_BETTER" "$NAME/teacher-heldout-top1.json"; then
        teacher="[$teacher$(printf ', %s' "${extras[@]}")]"
        el_teacher=(--set teacher="$teacher")  # without extra teachers, el's own (its init, the same network)
    fi
    # every path relative to ROOT, where everything runs: the inits as bundle.json will record them
    train el elastic.yaml --set init="$(ls -d "$NAME"/full/checkpoints/step-* | tail -n 1)" "${el_teacher[@]}"
    # the largest subnet also distils from the teacher: the full network is ~2 points above it after the elastic stages
    train sw sandwich.yaml --set init="$NAME/el/bundle" --set teacher="$teacher" --set stages.0.kd_weight=1.0
    [ "${UNTIL:-}" = sw ] && { say "training runs done (UNTIL=sw)"; return 0; }
    if [ ! -f "$NAME/bundle/bundle.json" ]; then
        say "packaging $NAME/sw"
        rm -rf "$NAME/bundle.tmp"
        python3 -m bench.reference.package --run "$NAME/sw" --calib-data "$DATA" --out "$NAME/bundle.tmp" \
            --recipe "$FULL_RECIPE" recipes/ofa-mbv3-cifar10-elastic.yaml recipes/ofa-mbv3-cifar10-sandwich.yaml
        mv "$NAME/bundle.tmp" "$NAME/bundle"
    fi
    if [ ! -f "$NAME/bundle/predictor.json" ]; then
        say "fitting the accuracy predictor on $NAME/bundle (appends its records as it goes; resumes)"
        python3 -m ofakit predictor fit --bundle "$NAME/bundle" --data "$DATA" \
            ${PREDICTOR_ARGS:---samples 500 --calibration-batches 8 --uniform}
    fi
    if [ ! -f "$NAME/front.json" ]; then
        say "front of $NAME/bundle"
        python3 -m bench.reference.front --bundle "$NAME/bundle" --calib-data "$DATA" --png "$NAME/front.png" \
            ${FRONT_ARGS:-} > "$NAME/front.json.tmp"
        mv "$NAME/front.json.tmp" "$NAME/front.json"
    fi
    say "done: $(python3 -c "$AGAINST_SHIPPED" "$NAME/bundle/bundle.json" "$NAME/front.json" \
        "$REPO/ofakit/bundles/ofa-mbv3-cifar10/bundle.json" "$REPO/bench/results/reference_front.jsonl")"
}

main "$@"; exit $?  # on one line: bash reads nothing more of this file once main has begun
