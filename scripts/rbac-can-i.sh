#!/usr/bin/env bash
# Checks the operator's RBAC on a live API server by impersonation: runs every line of
# tests/fixtures/rbac-expectations.txt as `kubectl auth can-i ... --as=SUBJECT` and compares
# the answer with the expected yes/no. Needs deploy/ applied (or at least its RBAC) and a
# kubeconfig allowed to impersonate (cluster-admin). Exits 1 when any answer differs.
#
#   scripts/rbac-can-i.sh [--kubeconfig PATH] [--as SUBJECT] [FILE]
#
# KUBECTL overrides the kubectl binary.
set -euo pipefail

kubectl="${KUBECTL:-kubectl}"
as=system:serviceaccount:binauthz-system:binauthz-operator
file="$(dirname "$0")/../tests/fixtures/rbac-expectations.txt"
kubeconfig=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kubeconfig) kubeconfig=(--kubeconfig "$2"); shift 2 ;;
    --as) as="$2"; shift 2 ;;
    -*) echo "rbac-can-i: unknown option $1" >&2; exit 1 ;;
    *) file="$1"; shift ;;
  esac
done

err="$(mktemp)"
trap 'rm -f "$err"' EXIT
checked=0 failed=0 line_number=0
while IFS= read -r line || [ -n "$line" ]; do
  line_number=$((line_number + 1))
  case "$line" in '' | '#'*) continue ;; esac
  read -ra words <<<"$line"
  want="${words[0]}"
  if [ "$want" != yes ] && [ "$want" != no ]; then
    echo "rbac-can-i: $file:$line_number: a line starts with yes or no" >&2
    exit 1
  fi
  got="$("$kubectl" "${kubeconfig[@]}" auth can-i "${words[@]:1}" --as="$as" 2>"$err" || true)"
  got="${got%%$'\n'*}"
  checked=$((checked + 1))
  # kubectl answers "no" for a resource type the server does not know, with a warning: a
  # misspelt line must not pass as a refusal.
  if grep -q "doesn't have a resource type" "$err"; then
    got=unknown-resource
  fi
  if [ "$got" = "$want" ]; then
    printf 'ok   %-3s %s\n' "$got" "${words[*]:1}"
  else
    failed=$((failed + 1))
    printf 'FAIL %s, expected %s: kubectl auth can-i %s (%s)\n' "${got:-error}" "$want" \
      "${words[*]:1}" "$(tr '\n' ' ' <"$err")"
  fi
done <"$file"
echo "$checked checked, $failed failed (as $as)"
[ "$failed" = 0 ]
