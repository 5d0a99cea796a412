#!/usr/bin/env bash
# Installs the browser test's Node packages (playwright-core, pinned by
# crates/cli/tests/browser/package-lock.json) with `npm ci`, only when the
# lock file changed since the last install, so a second run is instant.
# Browsers are never downloaded: the test drives Debian's chromium.
# Idempotent and safe to run concurrently (test binaries call it too).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/crates/cli/tests/browser"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup-node: $tool is missing; run scripts/install-deps.sh --services (or apt-get install nodejs npm)" >&2
    exit 1
  fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "setup-node: node $(node --version) is too old; playwright-core needs node 20 or newer" >&2
  exit 1
fi

exec 9>"$dir/.setup-node.lock"
flock 9
stamp="$dir/node_modules/.lock-sha256"
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$dir/node_modules/playwright-core/package.json" ]; then
  exit 0
fi
echo "setup-node: npm ci in ${dir#"$root"/}"
# No browser download: playwright-core has none, and this says so to any
# install script that might try.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
