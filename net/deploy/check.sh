#!/usr/bin/env bash
# Syntax checks of the deployment files with the tools that exist for them; what cannot run
# here (Docker, Kubernetes) is only parsed. Each check says when it skips for want of a tool.
#   net/deploy/check.sh [path to the built binary]
set -euo pipefail
cd "$(dirname "$0")"
bin=${1:-../../target/release/kromosynth-render-socket}
fail=0

if command -v haproxy >/dev/null; then
  # The certificate is made by the test; here only the parse matters, so check without TLS.
  sed 's/ ssl crt "${KRS_TLS_PEM}"//' haproxy.cfg >/tmp/krs-haproxy-check.cfg
  KRS_BIND=127.0.0.1:8443 KRS_SERVER1=127.0.0.1:8081 KRS_SERVER2=127.0.0.1:8082 \
    KRS_SERVER3=127.0.0.1:8083 haproxy -c -q -f /tmp/krs-haproxy-check.cfg \
    && echo "haproxy.cfg: valid (haproxy -c)" || { echo "haproxy.cfg: INVALID"; fail=1; }
else
  echo "haproxy.cfg: skipped (no haproxy)"
fi

if command -v systemd-analyze >/dev/null && [[ -x $bin ]]; then
  # verify wants the ExecStart binary to exist: point it at the built one.
  unit=/tmp/kromosynth-render-socket.service
  sed "s|/usr/local/bin/kromosynth-render-socket|$(realpath "$bin")|" \
    kromosynth-render-socket.service >"$unit"
  out=$(systemd-analyze verify "$unit" 2>&1 || true)
  if [[ -z $out ]]; then echo "systemd unit: valid (systemd-analyze verify)"; else echo "$out"; fail=1; fi
else
  echo "systemd unit: skipped (no systemd-analyze or no built binary at $bin)"
fi

if python3 -c 'import yamllint' 2>/dev/null; then
  python3 -m yamllint -d '{extends: default, rules: {line-length: {max: 100}, document-start: disable}}' \
    kubernetes.yaml && echo "kubernetes.yaml: valid (yamllint)" || fail=1
else
  echo "kubernetes.yaml: yamllint skipped (pip install yamllint)"
fi

if python3 -c 'import dockerfile_parse' 2>/dev/null; then
  python3 - <<'PY' || fail=1
from dockerfile_parse import DockerfileParser
d = DockerfileParser(path="Dockerfile")
instr = [i["instruction"] for i in d.structure]
froms = [i["value"] for i in d.structure if i["instruction"] == "FROM"]
assert len(froms) == 2 and " AS build" in froms[0] and "slim" in froms[1], froms
for need in ("USER", "HEALTHCHECK", "ENTRYPOINT", "STOPSIGNAL"):
    assert need in instr, need
print("Dockerfile: parsed (dockerfile-parse): two stages, slim runtime, USER, HEALTHCHECK")
PY
else
  echo "Dockerfile: skipped (pip install dockerfile-parse)"
fi
exit $fail
