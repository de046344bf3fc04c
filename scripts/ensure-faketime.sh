#!/usr/bin/env bash
# Install libfaketime (Debian `faketime`) for the clock-skew test, when it is missing
# (idempotent). Without apt, or without root, it says so and that test skips with the reason.
set -u

if [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] && command -v faketime >/dev/null 2>&1; then
  exit 0
fi
. "$(dirname "$0")/apt-ensure.sh"
apt_ensure ensure-faketime "the clock-skew test (tests/test_one_clock.py)" faketime
exit 0
