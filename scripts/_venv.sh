# Sourced by start.sh and test.sh: make .venv (Python 3.11) and install a requirements file into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
ensure_requirements() {
  local req="$1" stamp=".venv/.installed-$(basename "$1")"
  if [ ! -f "$stamp" ] || [ "$req" -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install --disable-pip-version-check -q -r "$req"
    touch "$stamp"
  fi
}

# LightGBM's wheel needs the OpenMP runtime (libgomp1 on Debian); most machines have it already.
if ! "$PY" -c "import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library('gomp') else 1)"; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgomp1) >/dev/null
  else
    echo "libgomp1 (OpenMP) is missing: run 'sudo apt-get install libgomp1' for LightGBM" >&2
  fi
fi
