#!/usr/bin/env bash
# Makes the audio fixtures the tests use: speech synthesized with espeak-ng and
# converted with ffmpeg, plus broken files for the error paths. Nothing here is
# committed; everything is regenerated from these commands.
#
#   scripts/make-fixtures.sh        the small fixtures (a second or two)
#   scripts/make-fixtures.sh long   also long-1min.wav, long-10min.wav and
#                                   licence-6min.wav (~42 MB)
#
# Output goes to $FIXTURES_DIR (default: fixtures/generated at the repo root).
# A file that already exists is left alone, so a second run is instant; delete
# the directory to regenerate.
set -euo pipefail

mode="${1:-small}"
case "$mode" in
small | long) ;;
*)
    echo "usage: $0 [long]" >&2
    exit 2
    ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${FIXTURES_DIR:-$root/fixtures/generated}"

missing=()
for tool in espeak-ng ffmpeg; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "make-fixtures: missing ${missing[*]}; install with: apt-get install ${missing[*]}" >&2
    exit 1
fi

mkdir -p "$out"
# Test binaries may call this concurrently; one writer at a time.
exec 9>"$out/.lock"
flock 9

# Writes go to a temporary name and are renamed, so an interrupted run never
# leaves a half-written fixture that a later run would take as done.
tmp="$out/.tmp.$$"
trap 'rm -f "$tmp"*' EXIT

ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }

# gen NAME CMD... : runs CMD with $tmp.<ext of NAME> as its output, unless NAME exists.
gen() {
    local name="$1"
    shift
    [[ -s "$out/$name" || ("$name" == empty.wav && -e "$out/$name") ]] && return 0
    local t="$tmp.${name##*.}"
    "$@" "$t"
    mv -f "$t" "$out/$name"
}

text="The quick brown fox jumps over the lazy dog. \
Audio files go in, and transcripts come out. \
Every step in between is a tracked job that a person can watch, retry and trust. \
Please call Stella and ask her to bring these things with her from the store."

speech_wav() { espeak-ng -v en-us -s 160 -w "$1" "$text"; }
# Re-encode espeak's output to plain 16-bit PCM without extra chunks.
speech_pcm() { ff -i "$out/.espeak.wav" -map_metadata -1 -c:a pcm_s16le "$1"; }
stereo44() { ff -i "$out/speech.wav" -map_metadata -1 -ac 2 -ar 44100 -c:a pcm_s16le "$1"; }
rate8k() { ff -i "$out/speech.wav" -map_metadata -1 -ar 8000 -c:a pcm_s16le "$1"; }
to_mp3() { ff -i "$out/speech.wav" -map_metadata -1 -c:a libmp3lame -b:a 64k -f mp3 "$1"; }
to_flac() { ff -i "$out/speech.wav" -map_metadata -1 -c:a flac -f flac "$1"; }
to_ogg() { ff -i "$out/speech.wav" -map_metadata -1 -c:a libvorbis -q:a 4 -f ogg "$1"; }
to_m4a() { ff -i "$out/speech.wav" -map_metadata -1 -c:a aac -b:a 64k -f ipod "$1"; }
silence() { ff -f lavfi -i anullsrc=r=16000:cl=mono -t 30 -c:a pcm_s16le "$1"; }
# Deterministic "random" bytes: AES-CTR over zeros, so every machine gets the same file.
garbage() {
    head -c 65536 /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 0 2>/dev/null >"$1" ||
        head -c 65536 /dev/urandom >"$1"
}
empty() { : >"$1"; }
truncated() {
    local size
    size=$(stat -c %s "$out/speech.mp3")
    head -c $((size * 40 / 100)) "$out/speech.mp3" >"$1"
}
not_audio() { printf 'This is a text file, not audio.\nIt should be refused.\n' >"$1"; }
# AMR: ffmpeg decodes it but Debian's build encodes none, so a small encoder
# (scripts/tools/amr-encode.c, opencore-amrnb and vo-amrwbenc) makes them.
amr_encoder() {
    local bin="$out/.amr-encode"
    if [[ ! -x "$bin" || "$root/scripts/tools/amr-encode.c" -nt "$bin" ]]; then
        gcc -O2 -o "$bin.$$" "$root/scripts/tools/amr-encode.c" -lopencore-amrnb -lvo-amrwbenc
        mv -f "$bin.$$" "$bin"
    fi
    printf '%s' "$bin"
}
to_amr_nb() { ff -i "$out/speech.wav" -ar 8000 -ac 1 -f s16le - | "$(amr_encoder)" nb >"$1"; }
to_amr_wb() { ff -i "$out/speech.wav" -ar 16000 -ac 1 -f s16le - | "$(amr_encoder)" wb >"$1"; }

# German speech for the multilingual model's tests (language detection,
# transcription in German, translation to English); reference in german.txt.
german_text="Heute ist das Wetter sehr schön, und die Sonne scheint. \
Ich gehe mit meinem Hund in den Park. \
Am Abend koche ich eine Suppe für die ganze Familie. \
Morgen fahre ich mit dem Zug nach Berlin."
# -b 1: the text is UTF-8 whatever the locale.
german_wav() { espeak-ng -v de -s 150 -b 1 -w "$1" "$german_text"; }
german_pcm() { ff -i "$out/.espeak-de.wav" -map_metadata -1 -c:a pcm_s16le "$1"; }

gen .espeak.wav speech_wav
gen speech.wav speech_pcm
gen speech-stereo-44k.wav stereo44
gen speech-8k.wav rate8k
gen speech.mp3 to_mp3
gen speech.flac to_flac
gen speech.ogg to_ogg
gen speech.m4a to_m4a
gen speech.amr to_amr_nb
gen speech-wb.amr to_amr_wb
gen silence-30s.wav silence
gen garbage.mp3 garbage
gen empty.wav empty
gen truncated.mp3 truncated
gen not-audio.txt not_audio
gen .espeak-de.wav german_wav
gen german.wav german_pcm

for f in speech speech-stereo-44k speech-8k; do
    [[ -s "$out/$f.txt" ]] || printf '%s\n' "$text" >"$out/$f.txt"
done
[[ -s "$out/german.txt" ]] || printf '%s\n' "$german_text" >"$out/german.txt"

if [[ "$mode" == long ]]; then
    # The speech repeated end to end: big enough that a decoder holding the
    # whole file in memory shows up in its peak RSS.
    repeat_to() {
        local seconds="$1" dest="$2"
        ff -stream_loop -1 -i "$out/speech.wav" -t "$seconds" -map_metadata -1 -c:a pcm_s16le "$dest"
    }
    long1() { repeat_to 60 "$1"; }
    long10() { repeat_to 600 "$1"; }
    gen long-1min.wav long1
    gen long-10min.wav long10
    # Six minutes that never repeat (the first 960 words of the GPL-3 read
    # at 160 words a minute), for chunked transcription against a reference.
    licence=/usr/share/common-licenses/GPL-3
    [[ -s "$out/licence-6min.txt" ]] ||
        tr -s '[:space:]' ' ' <"$licence" | cut -d' ' -f1-960 >"$out/licence-6min.txt"
    licence6() {
        espeak-ng -s 160 -w "$1.raw.wav" -f "$out/licence-6min.txt"
        ff -i "$1.raw.wav" -ar 16000 -ac 1 -c:a pcm_s16le "$1"
        rm -f "$1.raw.wav"
    }
    gen licence-6min.wav licence6
fi

echo "fixtures ready in $out"
