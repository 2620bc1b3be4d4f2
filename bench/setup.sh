#!/bin/sh
# Bench prerequisites: wrk, the HTTP load generator bench.http drives (Debian/Ubuntu: apt-get).
# The knox peer needs nothing here: bench.http installs it into bench/.venv-knox on first use.
set -eu
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
echo "bench: installing wrk (apt-get install -y wrk)" >&2
if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
else
    sudo apt-get install -y wrk || { sudo apt-get update && sudo apt-get install -y wrk; }
fi
