#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine: system packages (needs root or sudo), a virtual
# environment in .venv, and StreamAVS with the given extras.
#   bash scripts/setup.sh              # runtime only (run, subscribe, engines, data video)
#   bash scripts/setup.sh train,dev    # + training/export (PyTorch) and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # libportaudio2: microphone (sounddevice); alsa-utils: ALSA tools and the file-plugin test
    # microphone; ffmpeg: demo/test media and the MJPEG test camera; libzmq3-dev, gcc,
    # pkg-config: the C subscriber test; chromium: the browser test of the viewer (streamavs view).
    $sudo apt-get install -y -qq --no-install-recommends \
        libportaudio2 alsa-utils ffmpeg libzmq3-dev gcc pkg-config python3-venv chromium >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "$extras" ]; then
    .venv/bin/python -m pip install -q -e ".[$extras]"
else
    .venv/bin/python -m pip install -q -e .
fi
echo "StreamAVS installed in .venv ($(.venv/bin/streamavs version))"
