#!/usr/bin/env bash
# Install Debian's Chromium, its matching chromedriver and a colour emoji font for the browser
# tests (tests/browser: Selenium drives /usr/bin/chromium through /usr/bin/chromedriver,
# headless; nothing is downloaded outside apt; the font makes the page's emoji render in the
# screenshots instead of a blank box). Idempotent and quiet: installs only what is missing and
# prints apt's output only if it fails. Needs root (as on our machines and CI).
set -euo pipefail
packages=(chromium chromium-driver fonts-noto-color-emoji)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "browser: installing Debian's ${missing[*]}" >&2
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  if ! { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
      apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
fi
# (2>/dev/null: Debian's launcher script may warn while probing /dev/shm; harmless.)
echo "browser: ready ($(chromium --version 2>/dev/null), $(chromedriver --version | cut -d' ' -f1-2))"
