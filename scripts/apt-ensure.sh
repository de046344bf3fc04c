# Sourced by scripts/ensure-*.sh: install Debian packages a group of tests needs, or say why
# not (no apt-get, not root, install failed) so that those tests skip with the reason.
# Usage: apt_ensure NAME "WHAT SKIPS" PACKAGE...
apt_ensure() {
  local name="$1" skips="$2"
  shift 2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$name: no apt-get here; $skips will be skipped" >&2
    return 0
  fi
  if [ "$(id -u)" != "0" ]; then
    echo "$name: not root, cannot apt-get install $*; $skips will be skipped" >&2
    return 0
  fi
  echo "$name: installing $* (once per machine)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Other sessions may hold the dpkg lock for a while: wait for it rather than fail.
  local apt=(apt-get -o DPkg::Lock::Timeout=900 -o Acquire::Retries=3)
  if ! "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null 2>&1; then
    "${apt[@]}" update -q >/dev/null 2>&1 || true
    "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null \
      || echo "$name: apt-get install failed; $skips will be skipped" >&2
  fi
  return 0
}
