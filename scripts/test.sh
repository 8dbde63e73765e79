#!/usr/bin/env bash
# One command: install what the tests need (Python packages into .venv, Debian's chromium for the
# browser tests) and run the whole test suite against a real server. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_requirements requirements-dev.txt
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "chromium is missing: run 'sudo apt-get install chromium' for the browser tests" >&2
  fi
fi

# Dependency audit of the pinned runtime requirements (PIP_AUDIT=0 skips it). Known vulnerabilities
# make the run fail (bump the pin to a fixed version); an unreachable vulnerability service does not.
audit_rc=0
if [ "${PIP_AUDIT:-1}" != 0 ]; then
  echo "== pip-audit -r requirements.txt =="
  audit_out="$(mktemp)"
  set +e
  timeout 300 .venv/bin/pip-audit -r requirements.txt --progress-spinner off --desc off >"$audit_out" 2>&1
  rc=$?
  set -e
  grep -v "^WARNING: Location 'file:" "$audit_out" || true
  not_audited=$(grep -c "could not be audited" "$audit_out" || true)
  if grep -qE "Found [0-9]+ known vulnerabilit" "$audit_out"; then
    echo "pip-audit: KNOWN VULNERABILITIES in the pinned requirements (above): bump the pins to fixed versions." >&2
    audit_rc=1
  elif [ "$rc" -ne 0 ] || [ "$not_audited" -gt 0 ]; then
    echo "pip-audit: NOTE: the vulnerability service could not be reached or did not know $not_audited" \
         "package(s) (exit code $rc): those were NOT audited. This does not fail the tests; run" \
         "'.venv/bin/pip-audit -r requirements.txt' where PyPI's JSON API is reachable."
  else
    echo "pip-audit: no known vulnerabilities in requirements.txt"
  fi
  rm -f "$audit_out"
fi
# Lint and format are part of the tests: a violation fails the run (rules and their reasons: ruff.toml).
echo "== ruff check / ruff format --check =="
.venv/bin/ruff check --no-cache . || exit 1
.venv/bin/ruff format --check --no-cache . || { echo "ruff format: run '.venv/bin/ruff format .'" >&2; exit 1; }
set +e
.venv/bin/python -m pytest "$@"
test_rc=$?
set -e
if [ "$test_rc" -ne 0 ]; then exit "$test_rc"; fi
exit "$audit_rc"
