#!/usr/bin/env bash
# GPU check (`make gpu-check`): on a machine with one NVIDIA GPU, a Python that
# already has a CUDA build of torch, and no internet, install what is missing
# from the wheels in .whl/ (`make gpu-wheels` downloads them where pip works),
# build mmcv 2.1.0's ops for this GPU's architecture only, then train each
# family on the synth profile on the GPU and write images/s, peak GPU memory
# and mAP per family to $GPU_CHECK_OUT/gpu_check.{json,md} (benchmarks/gpu_check.py).
#
#   scripts/gpu_check.sh [all|build|run] [extra arguments of benchmarks/gpu_check.py]
#
# `build` installs and compiles (minutes; skipped when mmcv's ops already load),
# `run` measures; `all` (default) does both. The project's pins do not apply
# there: the machine's own torch, numpy, pandas and seaborn are used.
#
# If mmcv's CUDA ops do not compile (or take longer than MMCV_BUILD_TIMEOUT s),
# the compiler's errors are kept in $GPU_CHECK_OUT/mmcv_build.log and mmcv is
# built with its CPU ops instead: training needs no compiled op (the study's
# losses are plain PyTorch), and the check then evaluates on the CPU
# (`eval_device` in the results).
set -euo pipefail
cd "$(dirname "$0")/.."

PHASE=${1:-all}
[[ $# -gt 0 ]] && shift
PY=${GPU_PYTHON:-python3}
WHL=${WHL:-.whl}
SITE=${SITE:-/tmp/lossbench-site}
RESULTS=${GPU_CHECK_OUT:-reports/gpu}
MMCV_BUILD_TIMEOUT=${MMCV_BUILD_TIMEOUT:-480}
JOBS=${MAX_JOBS:-$(nproc)}
mkdir -p "$RESULTS" "$SITE"
export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
log() { echo "[gpu-check $(date +%H:%M:%S)] $*"; }

"$PY" - <<'EOF'
import torch
assert torch.cuda.is_available(), "gpu-check: no CUDA device visible to this Python"
p = torch.cuda.get_device_properties(0)
print(f"[gpu-check] {p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}; "
      f"torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
ARCH=$("$PY" -c "import torch; a, b = torch.cuda.get_device_capability(0); print(f'{a}.{b}')")

build() {
    if ! "$PY" -c "import mmdet, mmengine, pycocotools, shapely, terminaltables" 2>/dev/null; then
        ls "$WHL"/*.whl >/dev/null 2>&1 || { log "no wheels in $WHL/ (run make gpu-wheels where pip works)"; exit 2; }
        log "installing $(ls "$WHL"/*.whl | wc -l) wheels from $WHL/ into $SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "$WHL"/*.whl
    fi
    if "$PY" -c "import mmcv.ops" 2>/dev/null; then
        log "mmcv ops already load: nothing to build"
        return
    fi
    local src build_path="$PYTHONPATH"
    if ! "$PY" -c "import pkg_resources" 2>/dev/null; then
        # mmcv 2.1.0's setup.py imports pkg_resources (removed in setuptools 82)
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE-build" "$WHL"/build/setuptools-*.whl
        build_path="$SITE-build:$PYTHONPATH"
    fi
    src=$(mktemp -d)
    tar xzf "$WHL"/mmcv-2.1.0.tar.gz -C "$src"
    log "building mmcv 2.1.0 with CUDA ops for sm_${ARCH/./} on $JOBS cores (log: $RESULTS/mmcv_build.log)"
    local t0=$SECONDS
    if (cd "$src/mmcv-2.1.0" && PYTHONPATH="$build_path" MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="$JOBS" \
            timeout "$MMCV_BUILD_TIMEOUT" "$PY" -m pip install --no-index --no-deps --no-build-isolation \
            --no-compile --no-cache-dir --target "$SITE" . >"$RESULTS/mmcv_build.log" 2>&1); then
        log "mmcv built with CUDA ops in $((SECONDS - t0)) s"
        echo "cuda sm_${ARCH/./} $((SECONDS - t0))s" >"$RESULTS/mmcv_build.txt"
    else
        log "mmcv's CUDA build failed or timed out after $((SECONDS - t0)) s; first errors:"
        grep -m 20 -E "error|Error" "$RESULTS/mmcv_build.log" | cut -c1-300 || true
        echo "cuda build FAILED after $((SECONDS - t0))s (see mmcv_build.log); cpu ops" >"$RESULTS/mmcv_build.txt"
        log "building mmcv with CPU ops only (training on the GPU, evaluation on the CPU)"
        (cd "$src/mmcv-2.1.0" && rm -rf build && PYTHONPATH="$build_path" CUDA_VISIBLE_DEVICES="" MMCV_WITH_OPS=1 FORCE_CUDA=0 \
            MAX_JOBS="$JOBS" "$PY" -m pip install --no-index --no-deps --no-build-isolation --no-compile \
            --no-cache-dir --target "$SITE" . >"$RESULTS/mmcv_build_cpu.log" 2>&1)
    fi
    rm -rf "$src"
    "$PY" -c "import mmcv.ops; print('[gpu-check] mmcv.ops loads')"
}

run() {
    log "training each family on the synth profile on the GPU"
    "$PY" benchmarks/gpu_check.py --out "$RESULTS" "$@"
}

case "$PHASE" in
    build) build ;;
    run) run "$@" ;;
    all) build; run "$@" ;;
    *) echo "usage: $0 [all|build|run] [gpu_check.py arguments]" >&2; exit 2 ;;
esac
