#!/usr/bin/env bash
# The README's first command. Sets up and builds, then:
#   1. generates the synthetic phantom training set (engine_train does it from demo.yaml),
#   2. trains configs/demo.yaml (GPU when one answers, else CPU),
#   3. generates held-aside phantom volumes (another seed: never seen in training),
#   4. segments them with engine_infer and prints Dice for liver and tumour, and the paths of
#      the masks, preview pictures and stats.
# Environment: BUILD_DIR (default build), RUN_DIR (default runs/demo), DEVICE (default auto),
# TEST_CASES (default 4), extra engine_train flags in TRAIN_ARGS (e.g. "--set train.epochs=4").
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
BUILD_DIR=${BUILD_DIR:-build}
RUN_DIR=${RUN_DIR:-runs/demo}
DEVICE=${DEVICE:-auto}
TEST_CASES=${TEST_CASES:-4}
TRAIN_ARGS=${TRAIN_ARGS:-}
BIN="$BUILD_DIR/apps"
PHANTOM_SIZE=64,64,32          # must match data.phantom.size in configs/demo.yaml
TEST_DIR=runs/phantom_test     # held-aside cases (seed 1000; training uses seed 0)

echo "== [demo] setup and build"
bash scripts/setup.sh
BUILD_DIR="$BUILD_DIR" bash scripts/build.sh
T_BUILD=$(date +%s)

echo "== [demo] held-aside test phantoms ($TEST_CASES cases, seed 1000) -> $TEST_DIR"
if [ ! -f "$TEST_DIR/dataset.json" ]; then
  "$BIN/cuseg_dataset" phantom -o "$TEST_DIR" --cases "$TEST_CASES" --seed 1000 --size "$PHANTOM_SIZE"
fi

echo "== [demo] training configs/demo.yaml -> $RUN_DIR"
# shellcheck disable=SC2086
"$BIN/engine_train" -c configs/demo.yaml -o "$RUN_DIR" --device "$DEVICE" --overwrite $TRAIN_ARGS
T_TRAIN=$(date +%s)

echo "== [demo] inference on the held-aside volumes"
OUT="$RUN_DIR/test"
rm -rf "$OUT"
set +e
"$BIN/engine_infer" -m "$RUN_DIR" -i "$TEST_DIR/imagesTr" -o "$OUT/masks" --device "$DEVICE" \
  --ref "$TEST_DIR/labelsTr" --preview "$OUT/previews" --stats "$OUT/stats.json"
rc=$?
set -e
[ $rc -eq 0 ] || { echo "[demo] engine_infer failed (exit $rc)"; exit $rc; }
T_END=$(date +%s)

python3 - "$OUT/masks/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("== [demo] Dice on %d held-aside phantom volumes:" % len(s["metric_per_case"]))
for c in s["metric_per_case"]:
    m = c["metrics"]
    print("   %-10s liver %.4f  tumour %.4f" % (c["case"], m["liver"]["Dice"], m["tumour"]["Dice"]))
print("   mean       liver %.4f  tumour %.4f   (targets: liver >= 0.90, tumour >= 0.60)"
      % (s["mean"]["liver"]["Dice"], s["mean"]["tumour"]["Dice"]))
PY
echo "== [demo] outputs"
echo "   model:    $RUN_DIR/best.safetensors (curves $RUN_DIR/curves.svg, log $RUN_DIR/train.log)"
echo "   masks:    $OUT/masks/"
echo "   previews: $OUT/previews/"
echo "   stats:    $OUT/stats.json"
echo "   summary:  $OUT/masks/summary.json"
echo "== [demo] time: build $((T_BUILD - T0)) s, train $((T_TRAIN - T_BUILD)) s, infer $((T_END - T_TRAIN)) s, total $((T_END - T0)) s"
