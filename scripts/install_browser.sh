#!/usr/bin/env bash
# Debian's chromium (and CJK/emoji fonts for readable screenshots) for the WebUI's browser tests.
# Playwright drives this browser; its own browser download does not work on these machines.
# Installs only when missing and only as root with apt-get; otherwise says why and leaves the
# browser tests to skip with that reason. Usage: bash scripts/install_browser.sh
set -uo pipefail

if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi "wenquanyi"; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    if [ ! -x /usr/bin/chromium ]; then
        echo "note: chromium is not installed and this is not a root Debian shell: the browser tests will be" \
             "skipped (as root: apt-get install chromium chromium-driver)" >&2
    fi
    exit 0
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "installing Debian's chromium for the browser tests ..." >&2
    { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } \
        || echo "warning: chromium could not be installed; the browser tests will be skipped" >&2
fi
if ! fc-list 2>/dev/null | grep -qi "wenquanyi"; then
    { apt-get install -y -qq fonts-wqy-microhei fonts-noto-color-emoji >/dev/null; } \
        || echo "warning: CJK/emoji fonts not installed; screenshots may show boxes for Chinese text" >&2
fi
exit 0
