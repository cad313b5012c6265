#!/usr/bin/env bash
# Set up everything and run every test: Python (daemon, tasks, shared daemon, Neovim plugin),
# then the VS Code extension's typecheck, unit tests, and its suite in a real VS Code (code-server
# and headless Chromium, installed once into ~/.cache/ember-vscode-test). Real models only; the
# network is used only to install packages (PyPI, npm, Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export EMBER_TEST_CACHE="${EMBER_TEST_CACHE:-$PWD/.ember-cache/test}"

.venv/bin/ruff check daemon tests bench
.venv/bin/mypy  # daemon/ and bench/ (pyproject.toml [tool.mypy]); the package ships py.typed
.venv/bin/python -m pytest "$@"

EMBER_CMD="$PWD/.venv/bin/ember" bash editor-clients/vscode/scripts/test-vscode.sh
