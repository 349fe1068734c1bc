#!/usr/bin/env bash
# Regenerates demo.mp4, the built-in demo channel's clip: 16 s of ffmpeg test pattern and
# beeps, 426x240 H.264 baseline at 30 fps + mono AAC at 48 kHz, one fragment per 0.5 s
# (a keyframe every 15 frames).
#
# The demo loops the clip, so both tracks must last exactly 16 s:
# - the audio is trimmed so the encoder emits exactly 750 AAC frames (750 x 1024 samples);
# - audio and video are encoded apart, then muxed with -c copy, reading the audio with
#   -ignore_editlist so its priming frame is an ordinary first frame at time 0. Otherwise the
#   muxer stretches the first video frame to cover the AAC priming delay (making the video
#   21 ms longer than the audio). The audio must come from an .m4a, not raw ADTS: with
#   empty_moov the moov is written before the first packet, and ADTS input would leave the
#   esds without its AudioSpecificConfig, which browsers refuse.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i testsrc2=size=426x240:rate=30 -t 16 \
    -c:v libx264 -profile:v baseline -level 3.0 -pix_fmt yuv420p \
    -g 15 -keyint_min 15 -sc_threshold 0 -b:v 150k -maxrate 200k -bufsize 200k \
    "$tmp/v.mp4"
ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000" \
    -af atrim=end_sample=766976 -c:a aac -b:a 48k -ac 1 -ar 48000 "$tmp/a.m4a"
ffmpeg -hide_banner -loglevel error -y -i "$tmp/v.mp4" -ignore_editlist 1 -i "$tmp/a.m4a" \
    -map 0:v -map 1:a -c copy \
    -f mp4 -movflags frag_keyframe+empty_moov+default_base_moof demo.mp4
