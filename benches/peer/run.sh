#!/usr/bin/env bash
# The original renderer and ours, side by side, in one run on this machine.
#
#   benches/peer/run.sh [--repeat N] [--genomes ID,ID]
#
# 1. installs kromosynth@1.0.36 (the original renderer, --ignore-scripts: its native GPU
#    dependencies are not needed for useGPU=false) and node-web-audio-api@0.21.5 (the version
#    the fixtures were rendered with; kromosynth asks for ^0.21.3) into benches/peer/node_modules
#    (gitignored), unless they are there already;
# 2. times the original on every fixture genome and the four fixture requests (render.mjs),
#    writing target/peer/original.json;
# 3. times ours on the same genomes and requests and prints the ratio table
#    (cargo bench --bench throughput -- --compare target/peer/original.json).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
repeat=3
genomes=""
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) repeat="$2"; shift 2 ;;
    --genomes) genomes="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cd "$here"
want_k=1.0.36
want_w=0.21.5
have() { node -e "process.exit(require('./node_modules/$1/package.json').version === '$2' ? 0 : 1)" 2>/dev/null; }
if ! have kromosynth "$want_k" || ! have node-web-audio-api "$want_w"; then
  echo "installing kromosynth@$want_k node-web-audio-api@$want_w into $here/node_modules" >&2
  npm install --no-save --no-package-lock --ignore-scripts --no-audit --no-fund \
    "kromosynth@$want_k" "node-web-audio-api@$want_w" >&2
fi

target="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$target/peer"
out="$target/peer/original.json"
args=(--repeat "$repeat")
[ -n "$genomes" ] && args+=(--genomes "$genomes")
node render.mjs "${args[@]}" > "$out"
echo "original's timings: $out" >&2

cd "$root"
cargo bench --bench throughput -- --compare "$out" --reps "$repeat"
