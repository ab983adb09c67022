#!/usr/bin/env bash
# Regenerate the bundled sample clips (src/emotion2vec_plus/samples/*.wav) with espeak-ng + sox.
# Synthetic speech made by this project: no speaker, no corpus licence; released under CC0.
# Each file is named for what the bundled model says of it (tests/test_compact.py checks): espeak-ng's
# flat voice sounds neutral whatever the words or the pitch and speed, so all five are "neutral".
# Needs: apt-get install espeak-ng sox. Usage: bash tools/make_samples.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=src/emotion2vec_plus/samples
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

make_clip() {  # name voice pitch speed amplitude text
    local name=$1 voice=$2 pitch=$3 speed=$4 amplitude=$5 text=$6
    espeak-ng -v "$voice" -p "$pitch" -s "$speed" -a "$amplitude" -w "$tmp/$name.wav" "$text"
    sox "$tmp/$name.wav" -r 16000 -c 1 -b 16 "$out/$name.wav" gain -n -3
    echo "$out/$name.wav  $(soxi -D "$out/$name.wav") s  ($voice, pitch $pitch, speed $speed): $text"
}

make_clip en_neutral_1       en-us 40 150 100 "The meeting is scheduled for three o'clock on Thursday, in the small room."
make_clip en_neutral_2    en-us 85 220 150 "Wow! I can't believe it, we actually won the whole thing!"
make_clip en_neutral_3        en-us 20 110  70 "I don't really want to talk about it any more. Everything went wrong."
make_clip zh_neutral_1       cmn   45 150 100 "今天下午三点在小会议室开会，请准时参加。"
make_clip zh_neutral_2    cmn   85 210 150 "太好了！我们真的赢了！简直不敢相信！"
