#!/bin/sh
# What the report's browser check (scripts/report-browser-check.js) needs: Debian's
# chromium (apt, when root or sudo is at hand) and the npm package playwright-core in a
# cache folder, $TESSERA_CACHE (default ~/.cache/tessera)/playwright, reused once there.
# Prints that node_modules folder on stdout and exits 0; otherwise prints one line on
# stderr saying what is missing and why, and exits 1 (callers then SKIP the check and
# say so). Run by `make test`, `make report-demo` and tests/tools/test_cli_report.c's
# check. Cost measured on Debian 12 (2026-12-03, a local package mirror): chromium 156
# and 4 libraries it needs, 115 MB downloaded, 369 MB installed, 13 s; playwright-core
# 1.65, one npm package, 14 MB, no browser download, 2 s. Once installed, each check
# (Chromium start, load, DOM checks, screenshot) takes about 3 s.
CACHE=${TESSERA_CACHE:-${HOME:-/tmp}/.cache/tessera}
PW=$CACHE/playwright
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "no $CHROMIUM, and no root to install it (apt-get install chromium)" >&2; exit 1; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 ||
        { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; } ||
        { echo "apt-get install chromium failed" >&2; exit 1; }
    [ -x "$CHROMIUM" ] || { echo "chromium installed, but $CHROMIUM is not there" >&2; exit 1; }
fi
command -v node >/dev/null 2>&1 || { echo "no node (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -f "$PW/node_modules/playwright-core/package.json" ]; then
    command -v npm >/dev/null 2>&1 || { echo "no npm to install playwright-core (apt-get install npm)" >&2; exit 1; }
    mkdir -p "$PW" 2>/dev/null || { echo "cannot create $PW" >&2; exit 1; }
    # playwright-core has no install script and downloads no browser: Debian's is used
    (cd "$PW" && { [ -f package.json ] || npm init -y >/dev/null 2>&1; } &&
        npm install --ignore-scripts --no-audit --no-fund playwright-core >/dev/null 2>&1) ||
        { echo "npm install playwright-core into $PW failed (no registry?)" >&2; exit 1; }
fi
echo "$PW/node_modules"
