#!/usr/bin/env bash
# The VS Code extension's tests, all of them:
#   1. typecheck, bundle, and the unit tests in plain Node (pure modules, the fake daemon);
#   2. the mocha suite inside a real VS Code (code-server, driven by headless Chromium), against the
#      real daemon on its offline model: once on this folder, and once on the packaged .vsix,
#      installed into code-server.
# The toolchain (Node 24, code-server, Chromium, vsce) is installed once, outside the clone
# (scripts/toolchain.sh). Failures leave screenshots and logs in .test-results/.
#
#   bash editor-clients/vscode/scripts/test-vscode.sh [--grep PATTERN]
#
#   EMBER_CMD                the daemon (default: the repository's .venv/bin/ember)
#   EMBER_VSCODE_ARTIFACTS   where the .vsix, screenshots and logs go (default: .test-results)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/../.." && pwd)
ember=${EMBER_CMD:-$repo/.venv/bin/ember}
artifacts=${EMBER_VSCODE_ARTIFACTS:-$here/.test-results}
grep=()
if [ "${1:-}" = --grep ]; then grep=(--grep "$2"); fi
[ -x "$ember" ] || { echo "test-vscode: no daemon at $ember (bash scripts/setup.sh dev)" >&2; exit 2; }

seconds() { echo $(( $(date +%s) - $1 )); }
started=$(date +%s)
toolchain=$(bash "$here/scripts/toolchain.sh")
echo "test-vscode: toolchain ready in $(seconds "$started") s ($toolchain)"
export PATH="$toolchain/node/bin:$PATH" # Node 24: vsce needs it, and the tests run on it

cd "$here"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent typecheck
npm test

rm -rf "$artifacts"
mkdir -p "$artifacts"
vsix="$artifacts/ember-vscode.vsix"
"$toolchain/tools/node_modules/.bin/vsce" package --no-dependencies --skip-license --allow-missing-repository --no-rewrite-relative-links \
  --out "$vsix" >/dev/null
echo "test-vscode: packaged $vsix ($(du -k "$vsix" | cut -f1) KiB)"
npm run --silent build # vsce left its minified bundle in dist/; the development pass runs the plain one

status=0
for pass in dev vsix; do
  pass_started=$(date +%s)
  args=(--toolchain "$toolchain" --ember "$ember" --artifacts "$artifacts" "${grep[@]}")
  [ "$pass" = vsix ] && args+=(--vsix "$vsix")
  node scripts/run-vscode.mjs "${args[@]}" || status=1
  echo "test-vscode: $pass pass took $(seconds "$pass_started") s"
done
echo "test-vscode: done in $(seconds "$started") s"
exit $status
