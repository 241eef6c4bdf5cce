#!/usr/bin/env bash
# Set up StreamAVS (runtime only, no PyTorch), fetch the real media (Debian packages, GPL/CC:
# downloaded to ~/.cache/streamavs/media, never committed) and run the default engine on a real
# scene: a dog photographed and cut out, on a real photograph, beside a silent violin; the dog is
# silent for 3 s, then barks (a recording it was never trained on). Masks are published over
# ZeroMQ on tcp://127.0.0.1:5555 (a subscriber prints what it receives and saves the masks), and
# the overlay (mask, sounding score, uncertainty over the frame) is written to demo/overlay.mp4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p demo
.venv/bin/streamavs data fetch
.venv/bin/streamavs data video --real --source dog --distractor violin --out demo/demo.mp4 --seconds 10 --sound-starts 3
.venv/bin/streamavs subscribe tcp://127.0.0.1:5555 --duration 20 --save demo/masks &
subscriber=$!
sleep 2  # let the subscriber start and connect first: ZeroMQ PUB drops what it sends before a
         # subscription reaches it (the subscriber reports any such masks as "missed at join")
.venv/bin/streamavs run --input demo/demo.mp4 --realtime --record demo/overlay.mp4
wait "$subscriber"
echo "demo done: overlay video demo/overlay.mp4, masks in demo/masks/"
