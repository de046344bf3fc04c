#!/usr/bin/env bash
# Install what the console's browser tests need, when it is missing (idempotent).
# Debian's chromium (the tests drive /usr/bin/chromium through Playwright; never
# `playwright install`) and a CJK font so screenshots show Chinese, not boxes.
# Without apt, or without root, it says so and the browser tests skip with that reason.
set -u

if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi "CJK"; then
  exit 0
fi
. "$(dirname "$0")/apt-ensure.sh"
apt_ensure ensure-browser "browser tests" chromium fonts-noto-cjk
exit 0
