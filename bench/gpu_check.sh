#!/usr/bin/env bash
# The prepared GPU check (issue 14): under 8 minutes on one GPU.
#
#   bash bench/gpu_check.sh            # from the repository root
#
# Needs TensorFlow with CUDA already installed (`pip install -e .` then
# `pip install "tensorflow[and-cuda]"`): the GPU machines may have no network.
# Prints, and writes to ${OUT:-/tmp/gpu_check}/:
#   1. the devices TensorFlow sees (it stops if there is no GPU);
#   2. the GPU-relevant tests: mixed precision (float16 with loss scaling
#      included), XLA, the layers' mixed-precision checks, the strategies;
#   3. a mirrored run over every local GPU against one device, on generated
#      data, with the weights' distance printed;
#   4. bench/model_step.py's table: DBoF (garden size) and NeXtVLAD (paper)
#      against plain Keras models, and each under float32, XLA,
#      mixed_float16 and mixed_bfloat16.
# Each part has its own time limit; a part that fails is reported and the
# rest still run. The exit status is the number of failed parts.
# GPU_CHECK_ON_CPU=1 runs it without a GPU at --quick sizes: a check of the
# script itself, not of a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
failed=0

part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s)"
  local start=$SECONDS
  if timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then
    echo "   ok in $((SECONDS - start)) s"
  else
    echo "   FAILED (exit $?) in $((SECONDS - start)) s; last lines:"
    failed=$((failed + 1))
  fi
  grep -v "^I0000\|^WARNING: All log\|oneDNN\|cpu_feature_guard" \
    "$OUT/$name.log" | tail -n 25
}

part devices 60 python - <<'EOF'
import os
import sys
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print("TensorFlow", tf.__version__, "GPUs:", gpus)
for gpu in gpus:
    print(tf.config.experimental.get_device_details(gpu))
if not gpus and os.environ.get("GPU_CHECK_ON_CPU") != "1":
    sys.exit("no GPU visible to TensorFlow: install tensorflow[and-cuda]")
EOF
[ "$failed" -eq 0 ] || exit "$failed"
QUICK=()
[ "${GPU_CHECK_ON_CPU:-0}" = 1 ] && QUICK=(--quick --steps=1)

part tests 240 python -m pytest -q -x -p no:cacheprovider \
  tests/test_precision.py tests/layers/test_batch_norm.py \
  tests/layers/test_moe.py tests/layers/test_dbof.py \
  "tests/training/test_training.py::test_strategies_train_as_one_device" \
  -m "heavy or not heavy"

part mirrored 90 python - <<'EOF'
import os, tempfile
import numpy as np
import keras
from yt8m_segments.data import synthetic
from yt8m_segments.training import run_artifacts, task
import tensorflow as tf
root = tempfile.mkdtemp()
synthetic.generate(f"{root}/data", seed=0, num_classes=200,
                   num_train_videos=512, num_validate_videos=16,
                   num_test_videos=8)
weights = {}
for strategy in ("default", "mirrored"):
    task.run(task.TrainConfig(
        train_data_pattern=f"{root}/data/train-*.tfrecord",
        train_dir=f"{root}/{strategy}", num_classes=200, batch_size=64,
        max_steps=8, strategy=strategy, shuffle=False, ema_momentum=0.0,
        model_hparams={"dropout": 0.0}))
    weights[strategy] = run_artifacts.Run(f"{root}/{strategy}").model.get_weights()
distance = max(float(np.abs(a - b).max())
               for a, b in zip(weights["default"], weights["mirrored"]))
print(f"{len(tf.config.list_physical_devices('GPU'))} GPU(s): mirrored vs "
      f"one device after 8 steps, max |dw| = {distance:.2e}")
EOF

part model_step 300 python bench/model_step.py --models=DBoF,NeXtVLAD \
  --sizes=garden,paper --trainer= --nobreakdown --steps=10 \
  --precision=float32,float32+xla,mixed_float16,mixed_float16+xla,mixed_bfloat16 \
  "${QUICK[@]}"

echo "== $failed part(s) failed; logs in $OUT"
exit "$failed"
