#!/usr/bin/env bash
# Offline checks of deploy/: renders every Kustomize overlay, validates the result against the
# Kubernetes 1.31 schemas (strict), lints the YAML and runs checkov on the manifests and on
# deploy/Dockerfile. Exits non-zero on any failure.
#   scripts/check-deploy.sh
# The first run installs the tools into target/deploy-venv (PyPI); later runs need no network.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/target/deploy-venv"
out="$root/target/deploy"
k8s_version=1.31.0
skips_file=deploy/checkov-skips.txt
# Versions checked to work together here; bump them together.
tools=(kubernetes-validate==1.37.0 yamllint==1.38.0 checkov==3.3.30)

if ! command -v kubectl >/dev/null 2>&1; then
  echo "check-deploy: kubectl not found (needed for 'kubectl kustomize'); install kubectl >= 1.27 and rerun" >&2
  exit 1
fi

# The venv is (re)installed only when a pinned version is missing.
stamp="$venv/.installed"
if [ ! -x "$venv/bin/checkov" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${tools[*]}" ]; then
  echo "check-deploy: installing ${tools[*]} into $venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "${tools[@]}"
  echo "${tools[*]}" >"$stamp"
fi
# checkov: no calls home (guideline mappings, version check) so that it runs offline.
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false

mkdir -p "$out"
rm -f "$out"/*.yaml "$out"/*.checkov.txt
failed=0

echo "== yamllint deploy/" >&2
if ! "$venv/bin/yamllint" --strict -c deploy/.yamllint deploy/k8s; then
  failed=1
fi

# Skips for one target (an overlay's name, or "dockerfile"): lines "CHECK_ID TARGETS reason",
# TARGETS = * (every overlay) or a comma list.
skips_for() {
  awk -v t="$1" '
    /^[[:space:]]*(#|$)/ { next }
    { n = split($2, list, ","); for (i = 1; i <= n; i++) if ((list[i] == "*" && t != "dockerfile") || list[i] == t) { print $1; break } }
  ' "$skips_file" | paste -sd, -
}

# The Dockerfile cannot be built here (no engine), but checkov reads it.
echo "== checkov deploy/Dockerfile" >&2
skips=$(skips_for dockerfile)
skip_args=()
[ -z "$skips" ] || skip_args=(--skip-check "$skips")
if ! "$venv/bin/checkov" -f deploy/Dockerfile --framework dockerfile --quiet --compact --skip-download \
  "${skip_args[@]}" >"$out/Dockerfile.checkov.txt" 2>&1; then
  cat "$out/Dockerfile.checkov.txt" >&2
  failed=1
fi

overlays=()
for dir in deploy/k8s/overlays/*/; do
  overlays+=("$(basename "$dir")")
done
# Distinct check ids skipped somewhere.
nskip=$(awk '!/^[[:space:]]*(#|$)/ { print $1 }' "$skips_file" | sort -u | wc -l)
for o in "${overlays[@]}"; do
  rendered="$out/$o.yaml"
  echo "== $o: kubectl kustomize -> ${rendered#"$root"/}" >&2
  if ! kubectl kustomize "deploy/k8s/overlays/$o" >"$rendered"; then
    echo "check-deploy: $o: kustomize failed" >&2
    failed=1
    continue
  fi

  echo "== $o: kubernetes-validate --strict -k $k8s_version" >&2
  if ! "$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" "$rendered"; then
    failed=1
  fi

  skips=$(skips_for "$o")
  skip_args=()
  if [ -n "$skips" ]; then
    skip_args=(--skip-check "$skips")
  fi
  echo "== $o: checkov (skipped: ${skips:-none})" >&2
  report="$out/$o.checkov.txt"
  if "$venv/bin/checkov" -f "$rendered" --framework kubernetes --quiet --compact --skip-download \
    "${skip_args[@]}" >"$report" 2>&1; then
    :
  else
    cat "$report" >&2
    failed=1
  fi
done

nfailed=0
for f in "$out"/*.checkov.txt; do
  n=$(sed -n 's/.*Failed checks: \([0-9]*\).*/\1/p' "$f" | head -1)
  nfailed=$((nfailed + ${n:-0}))
done

if [ "$failed" -ne 0 ]; then
  echo "deploy: FAILED (${#overlays[@]} overlays; checkov $nfailed failed; see messages above)"
  exit 1
fi
echo "deploy: ${#overlays[@]} overlays rendered, validated (k8s $k8s_version), yamllint ok," \
  "checkov (manifests + Dockerfile) $nfailed failed ($nskip checks skipped, see $skips_file)"
