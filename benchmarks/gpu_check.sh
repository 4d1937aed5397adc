#!/usr/bin/env bash
# The GPU path, end to end, in one go: builds .venv from the GPU lock, prints the GPU, runs the whole
# pipeline on the synthetic source at 150 px with train.precision=auto for a few epochs in a scratch
# clone, and prints each stage's time and the training speed; then trains again with
# train.deterministic=false to show what determinism costs on this GPU.
#
# Run from the repository root: bash benchmarks/gpu_check.sh
# Knobs (environment): EPOCHS (3), SIZE (150), IMAGES_PER_CLASS (40), SKIP_VENV=1 uses .venv as it is
# (to try the script on a CPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-3} SIZE=${SIZE:-150} IMAGES_PER_CLASS=${IMAGES_PER_CLASS:-40}
export TF_CPP_MIN_LOG_LEVEL=2 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1

started=$(date +%s)
[ "${SKIP_VENV:-0}" = 1 ] || make venv-gpu
echo "environment ready in $(( $(date +%s) - started )) s"
PY=$PWD/.venv/bin/python
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
"$PY" -c "from coronet.console import import_tensorflow_quietly as q; q(); import tensorflow as tf
print('TensorFlow', tf.__version__, 'sees', tf.config.list_physical_devices('GPU'))"

elapsed() { local tenths=$(( ($(date +%s%N) - $1) / 100000000 )); echo "$((tenths / 10)).$((tenths % 10))"; }

# A scratch repository holding the working tree as it is (uncommitted changes included).
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/repo"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$scratch/repo"
cd "$scratch/repo"
git init --quiet && git add -A && git -c user.name=gpu-check -c user.email=gpu-check@localhost commit --quiet -m scratch
export PATH=$(dirname "$PY"):$PATH MLFLOW_TRACKING_URI=sqlite:///$scratch/mlflow.db
set_params() {  # key=value ... into params.yaml
    "$PY" - "$@" <<'EOF'
import sys, yaml
params = yaml.safe_load(open("params.yaml"))
for item in sys.argv[1:]:
    key, value = item.split("=", 1)
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = yaml.safe_load(value)
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
EOF
}
set_params download.source=synthetic download.synthetic.images_per_class="$IMAGES_PER_CLASS" \
    train.image_size="$SIZE" train.weights=none train.epochs="$EPOCHS" train.precision=auto \
    train.recalibrate_bn=true train.bn_momentum=0.9 train.learning_rate=0.001

for stage in download merge resize split train evaluate package; do
    t0=$(date +%s%N)
    dvc repro --single-item "$stage" > "$scratch/$stage.log" 2>&1 || { cat "$scratch/$stage.log"; exit 1; }
    echo "stage $stage: $(elapsed "$t0") s"
done
grep -h "training in\|images/s" "$scratch/train.log"
"$PY" -c "import json; m = json.load(open('metrics/metrics.json')); print('test accuracy', m['accuracy'])"

set_params train.deterministic=false
t0=$(date +%s%N)
dvc repro --single-item train > "$scratch/train-nondet.log" 2>&1 || { cat "$scratch/train-nondet.log"; exit 1; }
echo "stage train, deterministic=false: $(elapsed "$t0") s"
grep -h "images/s" "$scratch/train-nondet.log" | sed 's/^/deterministic=false: /'
echo "gpu_check done in $(( $(date +%s) - started )) s"
