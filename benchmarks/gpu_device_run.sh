#!/usr/bin/env bash
# The prepared GPU check of issue 12, point 6: VGG-16 (CIFAR shape, batch 128), AdaSTE
# against ste_sign, on the Keras 3 backends JAX (jit_compile) and PyTorch (eager), with
# benchmarks/gpu_throughput.py. The lent GPU machine has JAX and PyTorch (CUDA 13) but no
# TensorFlow and no package registry; keras and the two of its dependencies it lacks
# (namex, optree) travel as wheels in .whl/ (ignored by git), and the package runs from
# the source tree (PYTHONPATH), not installed.
#
# 1. Here, once, in the repository root (needs pip and a registry; about 3 MB):
#        bash benchmarks/gpu_device_run.sh fetch
# 2. On the GPU machine, through the device tool, in the repository root:
#        run(command="bash benchmarks/gpu_device_run.sh", carry=[".whl"], timeout_s=540)
#    It writes 5 files to $OUT (the tool returns at most 8): log and
#    gpu_throughput_keras3_{jax,torch}.{json,png}. Estimated at 3 to 5 minutes: JAX
#    compiles VGG-16 four times (two timed models, two peak-memory processes).
#    Extra arguments go to gpu_throughput.py, e.g. `--blocks 9` to shorten it.
#
# Then copy the JSON and plots to benchmarks/results/ and fill in BENCHMARKS.md.
set -uo pipefail

KERAS=keras==3.15.1
NAMEX=namex==0.1.0
OPTREE=optree==0.20.0   # compiled: the wheel must match the machine's Python (3.12)
WHEELS=${WHEELS:-.whl}  # (WHEELS and SITE only to try the script elsewhere)
SITE=${SITE:-/tmp/site}

if [ "${1:-}" = fetch ]; then
  exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$WHEELS" "$KERAS" "$NAMEX" "$OPTREE"
fi

: "${OUT:?OUT must name the folder for the results (the device tool sets it)}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "$WHEELS"/*.whl || { echo "no wheels in $WHEELS: run 'fetch'" >&2; exit 1; }
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
unset TF_USE_LEGACY_KERAS

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 - <<'EOF'
import importlib.metadata as m, sys
print(sys.version.split()[0], {p: m.version(p) for p in
      ("keras", "namex", "optree", "jax", "jaxlib", "torch", "numpy", "matplotlib")})
EOF
} 2>&1 | tee "$OUT/log"

status=0
for backend in jax torch; do
  echo "== $backend ==" | tee -a "$OUT/log"
  KERAS_BACKEND=$backend python3 benchmarks/gpu_throughput.py --backend "$backend" \
    --output "$OUT" "$@" 2>&1 | tee -a "$OUT/log" || status=1
done
exit $status
