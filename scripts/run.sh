#!/usr/bin/env bash
# Set up (first time only) and run the daemon on stdin/stdout with the offline default model.
#   printf '{"jsonrpc":"2.0","id":1,"method":"tokenize","params":{"text":"Hello"}}\n' | bash scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ember serve "$@"
