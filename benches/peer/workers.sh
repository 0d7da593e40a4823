#!/usr/bin/env bash
# Our render worker and the original's, side by side, in one run on this machine: kromosynth-cli's
# part is played by `cargo bench --bench workers`, against our server's worker port and against
# original-style render workers (worker.mjs: kromosynth@1.0.36 on the CPU, 2 renders at a time
# per process, one process per core as pm2 would run them).
#
#   benches/peer/workers.sh [bench options, e.g. --clients 2,16 --renders 4 --rate 16000]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
have() { node -e "process.exit(require('./node_modules/$1/package.json').version === '$2' ? 0 : 1)" 2>/dev/null; }
if ! have kromosynth 1.0.36 || ! have node-web-audio-api 0.21.5 || ! have ws 8.18.3; then
  echo "installing kromosynth@1.0.36 node-web-audio-api@0.21.5 ws@8.18.3 into $here/node_modules" >&2
  npm install --no-save --no-package-lock --ignore-scripts --no-audit --no-fund \
    kromosynth@1.0.36 node-web-audio-api@0.21.5 ws@8.18.3 >&2
fi
cores=$(nproc)
pids=()
urls=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for i in $(seq 1 "$cores"); do
  port=$((31050 + i))
  node worker.mjs --port "$port" 2>/dev/null &
  pids+=($!)
  urls+=("ws://127.0.0.1:$port")
done
# Wait until every peer worker accepts connections.
for u in "${urls[@]}"; do
  p=${u##*:}
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
    sleep 0.1
  done
done
cd "$root"
peer=$(IFS=,; echo "${urls[*]}")
cargo bench --bench workers -- --peer "$peer" "$@"
