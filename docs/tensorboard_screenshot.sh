#!/usr/bin/env bash
# Screenshot of TensorBoard on a sweep folder, with headless Chromium (Debian: apt-get install chromium).
#   docs/tensorboard_screenshot.sh outputs/multirun/<sweep> docs/tensorboard.png ['pr_auc']
set -euo pipefail
logdir=$1 out=$2 filter=${3:-val/pr_auc}
port=6123
tensorboard --logdir "$logdir" --port "$port" --host 127.0.0.1 >/tmp/tensorboard.log 2>&1 &
tb=$!
trap 'kill $tb' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port" >/dev/null && break; sleep 1; done
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --hide-scrollbars \
  --window-size=1500,1050 --virtual-time-budget=20000 --screenshot="$out" \
  "http://127.0.0.1:$port/?darkMode=false#scalars&_smoothingWeight=0&tagFilter=${filter//\//%2F}"
