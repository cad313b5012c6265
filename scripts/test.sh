#!/usr/bin/env bash
# Set up everything and run every test: Python (daemon, tasks, shared daemon, Neovim plugin),
# then the VS Code extension's typecheck, bundle and tests. Real models only, no network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export EMBER_TEST_CACHE="${EMBER_TEST_CACHE:-$PWD/.ember-cache/test}"

.venv/bin/ruff check daemon tests bench
.venv/bin/python -m pytest "$@"

cd editor-clients/vscode
npm ci --no-audit --no-fund --loglevel=error
npm run --silent typecheck
npm run --silent build
EMBER_CMD="$(cd ../.. && pwd)/.venv/bin/ember" npm test
