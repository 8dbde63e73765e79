#!/usr/bin/env bash
# One command: install everything into .venv, start the embedded database (unless MONGO_URI is set),
# write the demo data and configs, and serve the admin app. Extra arguments go to `cli serve`.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_requirements requirements.txt
if [ -z "${MONGO_URI:-}" ]; then
  .venv/bin/python -m cli db start
fi
.venv/bin/python -m cli demo
exec .venv/bin/python -m cli serve "$@"
