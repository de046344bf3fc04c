#!/usr/bin/env bash
# Install what the console's browser tests need, when it is missing (idempotent).
# Debian's chromium (the tests drive /usr/bin/chromium through Playwright; never
# `playwright install`) and a CJK font so screenshots show Chinese, not boxes.
# Without apt, or without root, it says so and the browser tests skip with that reason.
set -u

if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi "CJK"; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-browser: no apt-get here; browser tests will be skipped" >&2
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "ensure-browser: not root, cannot apt-get install chromium; browser tests will be skipped" >&2
  exit 0
fi
echo "ensure-browser: installing chromium and fonts-noto-cjk (once per machine)" >&2
export DEBIAN_FRONTEND=noninteractive
# Other sessions may hold the dpkg lock for a while: wait for it rather than fail.
apt_get() { apt-get -o DPkg::Lock::Timeout=900 -o Acquire::Retries=3 "$@"; }
if ! apt_get install -y --no-install-recommends chromium fonts-noto-cjk >/dev/null 2>&1; then
  apt_get update -q >/dev/null 2>&1 || true
  apt_get install -y --no-install-recommends chromium fonts-noto-cjk >/dev/null \
    || echo "ensure-browser: apt-get install failed; browser tests will be skipped" >&2
fi
exit 0
