#!/usr/bin/env bash
# Copies what the Helm chart shares with deploy/ (CRDs, alert rules, dashboard, the tenancy
# admission policy) into charts/binauthz-operator (Helm cannot
# read files outside the chart), and writes deploy/monitoring/prometheusrule.yaml from the
# plain rules file. `make crds` and `make chart` run it; scripts/lint-deploy.sh runs it with
# --check and fails when a copy is out of date.
#
#   scripts/sync-chart.sh           write the copies
#   scripts/sync-chart.sh --check   compare only; exit 1 naming the stale file
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=charts/binauthz-operator
check=0
[[ "${1:-}" == "--check" ]] && check=1

# The PrometheusRule wrapping deploy/monitoring/alerts.rules.yaml, verbatim.
prometheusrule() {
  cat <<'HEAD'
# Generated from alerts.rules.yaml by scripts/sync-chart.sh: edit that file, then run
# `make chart`. The alert rules of docs/runbook.md for the Prometheus Operator.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: binauthz-operator
  labels:
    app.kubernetes.io/name: binauthz-operator
spec:
HEAD
  grep -v '^#' deploy/monitoring/alerts.rules.yaml | sed 's/^/  /; s/^  $//'
}

# pairs: source -> copy
copies=(
  "deploy/monitoring/alerts.rules.yaml:${CHART}/files/alerts.rules.yaml"
  "deploy/monitoring/dashboard.json:${CHART}/files/dashboard.json"
  "deploy/tenancy/admission-policy.yaml:${CHART}/files/tenancy-admission-policy.yaml"
)
for crd in crds/*.yaml; do
  copies+=("${crd}:${CHART}/crds/$(basename "$crd")")
done

stale=()
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
prometheusrule >"$tmp"
if ! cmp -s "$tmp" deploy/monitoring/prometheusrule.yaml 2>/dev/null; then
  stale+=(deploy/monitoring/prometheusrule.yaml)
  [[ $check == 1 ]] || cp "$tmp" deploy/monitoring/prometheusrule.yaml
fi
for pair in "${copies[@]}"; do
  src="${pair%%:*}" dst="${pair#*:}"
  if ! cmp -s "$src" "$dst" 2>/dev/null; then
    stale+=("$dst")
    [[ $check == 1 ]] || { mkdir -p "$(dirname "$dst")"; cp "$src" "$dst"; }
  fi
done
# CRDs in the chart that crds/ no longer has.
for copy in "${CHART}"/crds/*.yaml; do
  [[ -e "$copy" ]] || continue
  if [[ ! -e "crds/$(basename "$copy")" ]]; then
    stale+=("$copy")
    [[ $check == 1 ]] || rm -f "$copy"
  fi
done

if [[ $check == 1 && ${#stale[@]} -gt 0 ]]; then
  printf 'sync-chart: out of date: %s; run `make chart` and commit\n' "${stale[*]}" >&2
  exit 1
fi
[[ ${#stale[@]} -eq 0 ]] || printf 'sync-chart: wrote %s\n' "${stale[*]}" >&2
