#!/usr/bin/env bash
# Time from opening a file to its first inline suggestion in a real VS Code (code-server plus
# headless Chromium), against the real daemon on its offline model: cold, warmed up on open, and
# warm (test/vscode/bench.ts). Prints a Markdown table at the end.
#
#   bash editor-clients/vscode/scripts/bench-first-suggestion.sh [ROUNDS]
#
#   EMBER_CMD   the daemon (default: the repository's .venv/bin/ember)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/../.." && pwd)
ember=${EMBER_CMD:-$repo/.venv/bin/ember}
[ -x "$ember" ] || { echo "bench: no daemon at $ember (bash scripts/setup.sh dev)" >&2; exit 2; }
toolchain=$(bash "$here/scripts/toolchain.sh")
export PATH="$toolchain/node/bin:$PATH"
cd "$here"
node scripts/build.mjs --tests
node scripts/build.mjs
# The rounds reach the extension host through the environment of code-server (EMBER_* is not passed).
export BENCH_ROUNDS_FOR_VSCODE=${1:-3}
node scripts/run-vscode.mjs --toolchain "$toolchain" --ember "$ember" --artifacts "${TMPDIR:-/tmp}/ember-bench-first-suggestion" \
  --tests bench.js --timeout 3000 | grep -E '^\[main\] (bench|\|)' | sed 's/^\[main\] //'
