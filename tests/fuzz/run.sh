#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each, or the first argument) with
# libFuzzer through cargo fuzz. Needs a nightly toolchain; installs cargo-fuzz when missing.
# Skips, saying why, where either cannot be had; fails when a target finds a crash (the input
# is left in tests/fuzz/artifacts/<target>/: copy it to tests/fuzz/regressions/<target>/ and
# fix the bug; tests/fuzz_regressions.rs replays that folder on stable in every test run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-60}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipping: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  if ! cargo install cargo-fuzz --locked >/dev/null 2>&1; then
    echo "fuzz: skipping: cargo-fuzz could not be installed"
    exit 0
  fi
fi
cd "$root"
# Seeds: the fixture genomes, the regression inputs, a few client messages.
for target in client_message genome frames; do
  mkdir -p "$here/corpus/$target"
  if [ -d "$here/regressions/$target" ]; then
    cp -f "$here/regressions/$target"/* "$here/corpus/$target/" 2>/dev/null || true
  fi
done
cp -f tests/fixtures/reference/*.genome.json "$here/corpus/genome/"
printf '%s' '{"type":"render","genomeId":"01M88X7T6Y68CC64GC56PAT2JM","duration":1,"batch":true,"normalize":"peak","requestId":"a"}' > "$here/corpus/client_message/render"
printf '%s' '{"genomeString":"{}","duration":1,"sampleRate":16000,"antiAliasing":true}' > "$here/corpus/client_message/worker"
printf 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n' > "$here/corpus/frames/health"
cargo +nightly fuzz build --fuzz-dir "$here" >&2
for target in client_message genome frames; do
  echo "fuzz: $target for ${seconds} s" >&2
  cargo +nightly fuzz run --fuzz-dir "$here" "$target" "$here/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::|Done|==|SUMMARY|INFO: -max_total)|panicked|ERROR" || true
  if [ -n "$(ls -A "$here/artifacts/$target" 2>/dev/null)" ]; then
    echo "fuzz: $target found a crash: $(ls "$here/artifacts/$target")"
    exit 1
  fi
done
echo "fuzz: no crash in ${seconds} s per target"
