#!/usr/bin/env bash
# What only a machine with an NVIDIA GPU can show (README, "Production (Docker Compose)").
# One command, from the repository root of a checkout, with uv and network access to PyPI:
#
#   bash scripts/gpu_check.sh
#
# 1. the GPU and its driver (>= 580.65.06: CUDA 13, which onnxruntime-gpu's and torch's
#    CUDA wheels need); the project's venv (`uv sync --frozen`: CUDA torch from the lock);
# 2. a champion trained here by FULL FINE-TUNING on the GPU (synthetic pool -> lakeFS
#    emulator -> `pawpaw train --mode finetune`), its training speed in img/s;
# 3. the GPU bento: `PAWPAW_SERVE_GPU=1 pawpaw export` (onnxruntime-gpu[cuda,cudnn] pinned,
#    gpu: 1), served from the bento's own requirements (a separate venv, as its image has
#    them; with GPU_CHECK_DOCKER=1: `bentoml containerize` + `docker run --gpus`), and proof
#    that the model runs on the GPU (the server holds GPU memory; CUDA provider in the log);
# 4. serving speed: benchmarks/serving.py --url (img/s, p50/p99, errors at concurrency
#    1/8/32, the same load generator as on CPU), else a timed request loop.
# Everything is written under $GPU_CHECK_OUT (default data/gpu_check/<timestamp>), with a
# summary in summary.txt. Nothing here runs in CI (no GPU there); tests only check its syntax.
set -euo pipefail
cd "$(dirname "$0")/.."

MIN_DRIVER="580.65.06"
out="${GPU_CHECK_OUT:-data/gpu_check/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
summary="$out/summary.txt"
: >"$summary"
port="${GPU_CHECK_PORT:-3300}"
lakefs_port="${GPU_CHECK_LAKEFS_PORT:-8801}"
pids=()

say() { echo "gpu_check: $*" | tee -a "$summary" >&2; }
cleanup() {
    for pid in "${pids[@]:-}"; do
        [ -n "$pid" ] && kill -- "-$pid" 2>/dev/null || true
    done
    if [ -n "${container:-}" ]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
# start NAME CMD...: a background server in its own process group, log under $out.
start() {
    local name="$1"
    shift
    setsid "$@" >"$out/$name.log" 2>&1 &
    pids+=("$!")
}
wait_http() {  # wait_http URL SECONDS
    local deadline=$((SECONDS + $2))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || { say "FAIL: $1 did not answer in $2 s"; exit 1; }
        sleep 2
    done
}

# --- 1. the machine ---------------------------------------------------------------------------
command -v nvidia-smi >/dev/null || { say "FAIL: no nvidia-smi: no NVIDIA driver here"; exit 1; }
gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)"
driver="$(echo "$gpu" | awk -F', ' '{print $2}')"
say "GPU: $gpu"
if [ "$(printf '%s\n%s\n' "$MIN_DRIVER" "$driver" | sort -V | head -n 1)" != "$MIN_DRIVER" ]; then
    say "FAIL: driver $driver < $MIN_DRIVER (CUDA 13 wheels need it)"
    exit 1
fi
uv sync --frozen >"$out/uv-sync.log" 2>&1
py="$PWD/.venv/bin/python"
pawpaw="$PWD/.venv/bin/pawpaw"
"$py" -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))' \
    | tee -a "$summary"

# A private data dir, lakeFS emulator and SQLite MLflow: nothing outside $out is touched.
export PAWPAW_DATA_DIR="$out/data"
export PAWPAW_BENTOML_HOME="$out/bentoml" BENTOML_HOME="$out/bentoml" BENTOML_DO_NOT_TRACK=true
export PAWPAW_LAKEFS_ENDPOINT="http://127.0.0.1:$lakefs_port"
export NML_DISABLE_USAGE_LOGGING=1
unset PAWPAW_MLFLOW_TRACKING_URI PAWPAW_MONITORING_DB_URL

# --- 2. fine-tune on the GPU ------------------------------------------------------------------
start lakefs-emulator "$pawpaw" lakefs-emulator
wait_http "$PAWPAW_LAKEFS_ENDPOINT/api/v1/healthcheck" 60
"$pawpaw" synth "$out/pool" --n "${GPU_CHECK_POOL:-2000}" >"$out/synth.log" 2>&1
commit="$("$pawpaw" sample --pool "$out/pool" --n "${GPU_CHECK_SAMPLE:-1500}" | tail -n 1)"
say "sample commit: $commit"
start_s=$SECONDS
"$pawpaw" train --commit "$commit" --mode finetune 2>&1 | tee "$out/finetune.log" >&2
say "fine-tune: $((SECONDS - start_s)) s wall; per epoch: $(grep -o '[0-9.]* img/s' "$out/finetune.log" | paste -sd ' ' -)"
grep -q 'img/s' "$out/finetune.log" || { say "FAIL: the fine-tune printed no img/s"; exit 1; }

# --- 3. the GPU bento, served -----------------------------------------------------------------
PAWPAW_SERVE_GPU=1 "$pawpaw" export 2>&1 | tee "$out/export.log" >&2
tag="$(sed -n 's/^bento:[[:space:]]*//p' "$out/export.log" | tail -n 1)"
[ -n "$tag" ] || { say "FAIL: no bento tag from pawpaw export"; exit 1; }
bento_dir="$("$py" -c 'import sys, bentoml; print(bentoml.bentos.get(sys.argv[1]).path)' "$tag")"
grep -q '^onnxruntime-gpu\[cuda,cudnn\]==' "$bento_dir/env/python/requirements.txt" \
    || { say "FAIL: the GPU bento does not pin onnxruntime-gpu[cuda,cudnn]"; exit 1; }
say "bento: $tag ($(grep '^onnxruntime-gpu' "$bento_dir/env/python/requirements.txt"))"
url="http://127.0.0.1:$port"
if [ "${GPU_CHECK_DOCKER:-0}" = 1 ]; then
    "$py" -m bentoml containerize "$tag" -t pawpularity-service:gpu-check >"$out/containerize.log" 2>&1
    container="pawpaw-gpu-check-$$"
    docker run -d --name "$container" --gpus 1 -p "127.0.0.1:$port:3000" \
        pawpularity-service:gpu-check >/dev/null
    (docker logs -f "$container" >"$out/bento.log" 2>&1 &)
else
    # The bento's own requirements (what its image installs), beside this project's venv.
    uv venv --python 3.11 "$out/bento-venv" >/dev/null
    VIRTUAL_ENV="$out/bento-venv" uv pip install -r "$bento_dir/env/python/requirements.txt" \
        "bentoml==$("$py" -c 'import bentoml; print(bentoml.__version__)')" >"$out/bento-venv.log" 2>&1
    start bento env PAWPAW_SERVE_GPU=1 "$out/bento-venv/bin/bentoml" serve "$tag" --port "$port"
fi
if ! (wait_http "$url/readyz" 600); then
    # The GPU build refuses to start when ONNX Runtime offers no CUDAExecutionProvider.
    say "bento log: $(grep -m 1 -o 'ProviderError.*' "$out/bento.log" 2>/dev/null || tail -n 3 "$out/bento.log")"
    exit 1
fi
"$py" - "$url" "$out/pool" <<'PY'
import sys, pathlib, httpx
url, pool = sys.argv[1], pathlib.Path(sys.argv[2])
image = next(pool.glob("train/*.jpg")).read_bytes()
for _ in range(5):  # warm-up: the first calls create the CUDA context
    httpx.post(f"{url}/predict", files=[("images", ("p.jpg", image))], timeout=120).raise_for_status()
PY
gpu_apps="$(nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader || true)"
echo "$gpu_apps" >"$out/gpu-apps.txt"
if [ -z "$gpu_apps" ]; then
    say "FAIL: the bento holds no GPU memory: it serves on the CPU"
    exit 1
fi
say "GPU processes while serving: $(echo "$gpu_apps" | paste -sd ';' -)"
if grep -qi "CUDAExecutionProvider" "$out/bento.log" 2>/dev/null; then
    say "CUDAExecutionProvider named in the service log"
fi

# --- 4. serving speed -------------------------------------------------------------------------
if [ -f benchmarks/serving.py ]; then
    # The running GPU bento, driven at concurrency 1/8/32 (img/s, p50/p99, errors).
    "$py" benchmarks/serving.py --url "$url" --seconds "${GPU_CHECK_SECONDS:-15}" \
        --workdir "$out" --out "$out/serving.json" 2>&1 | tee "$out/serving-benchmark.txt" >&2
    say "benchmarks/serving.py: $(grep -E '^ +(1|8|32) \|' "$out/serving-benchmark.txt" | paste -sd ';' -)"
else
    "$py" - "$url" "$out/pool" <<'PY' | tee -a "$summary"
import concurrent.futures as cf, pathlib, statistics, sys, time
import httpx
url, pool = sys.argv[1], pathlib.Path(sys.argv[2])
images = [p.read_bytes() for p in sorted(pool.glob("train/*.jpg"))[:64]]

def one(client, i):
    t = time.perf_counter()
    client.post(f"{url}/predict", files=[("images", ("p.jpg", images[i % len(images)]))],
                timeout=120).raise_for_status()
    return time.perf_counter() - t

for workers, n in ((1, 200), (16, 800)):
    with httpx.Client() as client, cf.ThreadPoolExecutor(workers) as ex:
        t = time.perf_counter()
        lat = sorted(ex.map(lambda i: one(client, i), range(n)))
        wall = time.perf_counter() - t
    print(f"serving: {workers:2d} concurrent: {n / wall:7.1f} img/s, "
          f"p50 {statistics.median(lat) * 1e3:.1f} ms, p95 {lat[int(0.95 * n)] * 1e3:.1f} ms")
PY
fi
say "OK: all GPU checks passed; details in $out"
