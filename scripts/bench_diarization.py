#!/usr/bin/env python3
"""Our diarizer against senko 0.2.2 (PyPI, on CPU), on the same audio and
machine in one run: wall time and peak RSS of each as a process of its own,
and the diarization error rate of each against the reference (scripts/der.py:
pyannote.metrics, collar 0.25, overlap scored, the sample's UEM).

    python3 scripts/bench_diarization.py [--long-minutes N ...] [--only NAME ...]
        [--skip-peer] [--runs N] [--threads N] [--oracle-speakers]
        [--synthetic] [--ours PATH] [--peer-python PATH] [--json FILE]

Audio: the real recordings of scripts/fetch-diarization-samples.sh
(voxconverse-aepyx 169 s / 4 speakers, pyannote-sample 30 s / 2,
ami-tst00 30 s / 4, jfk-single 11 s / 1; fetched when missing) and, for
speed, long-Nmin: the four laid end to end, over and over, cut at N minutes
(default 10; --long-minutes 0 for none, repeat it for several lengths). Its
reference is theirs, shifted, each speaker labelled SOURCE/SPEAKER: a
repeated recording brings back the same speakers under the same labels.
--synthetic adds scripts/make-conversation.py's 3-speaker espeak-ng
conversation (seed 1).

Ours: $CARGO_TARGET_DIR/release/examples/diarize, else debug/ (CARGO_TARGET_DIR
defaults to ~/.cache/pipeline-manager/target; build it with
`cargo build --release -p pipeline-diarize --example diarize`), models from
the data dir; DIARIZE_STEP and DIARIZE_THRESHOLD pass through, --threads
sets DIARIZE_THREADS. The peer: senko's Diarizer(device='cpu') (silero VAD,
CAM++ on PyTorch, spectral clustering under 20 min of audio and
UMAP+HDBSCAN from 20 min), scored on its merged_segments as senko's own
evaluation does; its raw segments are scored too (detail table). It runs in
a venv of its own, ~/.cache/pipeline-manager/bench-venv, made here when
missing (pinned senko, torch 2.8.0 from PyPI (the CUDA build: PyPI has no
CPU-only torch; about 5 GB), silero-vad and the rest; idempotent), or
--peer-python. Both get the speaker count only with --oracle-speakers.

Each system first diarizes jfk-single once, untimed (page cache, numba's
cache). Times are whole processes (interpreter, imports and model loading
included); "core" columns are the diarization alone as each reports it.
With --runs N the median wall time of N runs is shown. On a busy machine
use --threads 1: PyTorch's OpenMP threads (senko takes one per core) slow
CAM++ four to five times when another process holds a core (seen on 2 cores
beside a cargo build: 1.5 s with one thread, 5 to 8 s with two, for the same
30 s). Markdown on stdout,
progress on stderr; hypotheses and logs are kept in
~/.cache/pipeline-manager/bench-diarization/.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOME = os.path.expanduser("~")
DATA = os.environ.get("PIPELINE_DATA_DIR") or os.path.join(HOME, ".local/share/pipeline-manager")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(HOME, ".cache"), "pipeline-manager")
SAMPLES = os.path.join(DATA, "samples", "diarization")
REAL = ["voxconverse-aepyx", "pyannote-sample", "ami-tst00", "jfk-single"]
PEER_VENV = os.path.join(CACHE, "bench-venv")

# The peer's venv, exactly. torch 2.8.0 is the PyPI (CUDA 12.8) build; its
# nvidia-* wheels come along but no GPU is used (device='cpu').
PEER_PINS = [
    "senko==0.2.2", "torch==2.8.0", "silero-vad==6.2.3",
    "numpy==2.4.6", "scipy==1.17.1", "scikit-learn==1.9.1", "umap-learn==0.5.12",
    "hdbscan==0.8.44", "numba==0.68.1", "llvmlite==0.50.0", "pynndescent==0.7.0",
    "soundfile==0.14.0", "pyyaml==6.0.4", "termcolor==3.3.0", "colour-science==0.4.7",
]

PEER_DRIVER = r"""
import json, os, sys, time
t0 = time.time()
import senko
t1 = time.time()
wav, warm, speakers, threads, raw_out, first = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
d = senko.Diarizer(device="cpu", vad="silero", clustering="cpu", warmup=warm, quiet=True)
if threads:
    d.logical_cores = threads
    d._set_torch_num_threads()
if speakers:
    d.spectral_cluster.cluster.k = speakers  # only the spectral path (< 20 min) takes a count
if first:
    d.diarize(first)  # a first call, untimed: PyTorch's first CAM++ batches are slow
t2 = time.time()
r = d.diarize(wav)
t3 = time.time()
uri = os.path.splitext(os.path.basename(wav))[0]
def rttm(segs):
    return "".join(
        f"SPEAKER {uri} 1 {s['start']:.3f} {s['end'] - s['start']:.3f} <NA> <NA> {s['speaker']} <NA> <NA>\n"
        for s in segs)
sys.stdout.write(rttm(r["merged_segments"] if r else []))
with open(raw_out, "w") as f:
    f.write(rttm(r["raw_segments"] if r else []))
import torch
print(json.dumps({
    "import_s": t1 - t0, "load_s": t2 - t1, "core_s": t3 - t2,
    "speakers": r["merged_speakers_detected"] if r else 0,
    "raw_speakers": r["raw_speakers_detected"] if r else 0,
    "timing": r["timing_stats"] if r else {}, "torch_threads": torch.get_num_threads(),
    "clustering": "spectral" if (r and r["vad"][-1][1] < 1200.0) else "umap_hdbscan",
}), file=sys.stderr)
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log(f"bench_diarization: {msg}")
    sys.exit(1)


# --- inputs ---------------------------------------------------------------

def wav_seconds(path):
    with wave.open(path, "rb") as w:
        return w.getnframes() / w.getframerate()


def read_rttm(path):
    turns = []
    with open(path) as f:
        for line in f:
            x = line.split()
            if len(x) >= 8 and x[0] == "SPEAKER":
                turns.append((float(x[3]), float(x[4]), x[7]))
    return turns


def ensure_samples(names):
    missing = [n for n in names if not all(os.path.exists(os.path.join(SAMPLES, f"{n}.{e}")) for e in ("wav", "rttm", "uem"))]
    if missing:
        log(f"fetching samples: {' '.join(missing)}")
        subprocess.run(["bash", os.path.join(ROOT, "scripts/fetch-diarization-samples.sh"), *missing],
                       check=True, stdout=sys.stderr)


def build_long(minutes):
    """long-Nmin.{wav,rttm,uem} in the samples dir: the real samples end to end, cut at N minutes."""
    name = f"long-{minutes:g}min"
    base = os.path.join(SAMPLES, name)
    if all(os.path.exists(f"{base}.{e}") for e in ("wav", "rttm", "uem")):
        return name
    ensure_samples(REAL)
    log(f"building {name}")
    rate = 16000
    target = int(round(minutes * 60 * rate))
    params = None
    frames = []
    lines = []
    written = 0
    i = 0
    while written < target:
        src = REAL[i % len(REAL)]
        i += 1
        with wave.open(os.path.join(SAMPLES, f"{src}.wav"), "rb") as w:
            p = (w.getnchannels(), w.getsampwidth(), w.getframerate())
            if p != (1, 2, rate):
                die(f"{src}.wav is not 16 kHz mono 16-bit")
            n = min(w.getnframes(), target - written)
            frames.append(w.readframes(n))
        offset, length = written / rate, n / rate
        for start, dur, spk in read_rttm(os.path.join(SAMPLES, f"{src}.rttm")):
            s, e = max(0.0, start), min(length, start + dur)
            if e > s:
                lines.append((offset + s, e - s, f"{src}/{spk}"))
        written += n
    tmp = f"{base}.wav.part"
    with wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for chunk in frames:
            w.writeframes(chunk)
    with open(f"{base}.rttm", "w") as f:
        for start, dur, spk in sorted(lines):
            f.write(f"SPEAKER {name} 1 {start:.3f} {dur:.3f} <NA> <NA> {spk} <NA> <NA>\n")
    with open(f"{base}.uem", "w") as f:
        f.write(f"{name} 1 0.000 {written / rate:.3f}\n")
    os.replace(tmp, f"{base}.wav")
    return name


def build_synthetic():
    # Made anew each run (seconds; the same bytes for the same generator).
    name = "conv-3spk-seed1"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts/make-conversation.py"), "--speakers", "3",
                    "--seed", "1", "--name", name, "--out", SAMPLES], check=True, stdout=sys.stderr)
    return name


# --- the two systems -------------------------------------------------------

def find_ours(explicit):
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(CACHE, "target")
    for profile in ("release", "debug"):
        path = os.path.join(target, profile, "examples", "diarize")
        if os.access(path, os.X_OK):
            return path
    return None


def peer_ready(python):
    if not os.access(python, os.X_OK):
        return False
    r = subprocess.run([python, "-c", "import importlib.metadata as m, senko, silero_vad, torch; "
                        "assert m.version('senko') == '0.2.2' and torch.__version__.split('+')[0] == '2.8.0'"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    return r.returncode == 0


def ensure_peer_venv(venv, base_python):
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".bench-pins")
    pins = "\n".join(PEER_PINS) + "\n"
    if os.path.exists(marker) and open(marker).read() == pins and peer_ready(python):
        return python
    ok = subprocess.run([base_python, "-c", "import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))"])
    if ok.returncode:
        die(f"{base_python}: senko 0.2.2 needs Python 3.10 to 3.13 (--venv-python)")
    log(f"installing senko 0.2.2 and torch 2.8.0 into {venv} (about 5 GB, once)")
    subprocess.run([base_python, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", *PEER_PINS], check=True)
    if not peer_ready(python):
        die(f"{venv}: senko does not import after the install")
    with open(marker, "w") as f:
        f.write(pins)
    return python


def run(cmd, env, stdout_path, stderr_path):
    """Runs one process to its end: (wall seconds, peak RSS MiB, exit code). wait4 gives its own rusage."""
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def run_ours(binary, wav, speakers, threads, work, tag):
    env = dict(os.environ)
    if threads:
        env["DIARIZE_THREADS"] = str(threads)
    cmd = [binary, wav] + ([str(speakers)] if speakers else [])
    hyp, err = os.path.join(work, f"{tag}.ours.rttm"), os.path.join(work, f"{tag}.ours.log")
    wall, rss, rc = run(cmd, env, hyp, err)
    text = open(err).read()
    if rc:
        die(f"ours failed ({rc}) on {wav}:\n{text[-2000:]}")
    m = re.search(r"in ([0-9.]+) s \(load ([0-9.]+) s\)", text)
    n = re.search(r"(\d+) speakers", text)
    return {"wall": wall, "rss": rss, "hyp": hyp, "core": float(m.group(1)) if m else None,
            "load": float(m.group(2)) if m else None, "speakers_said": int(n.group(1)) if n else None}


def run_peer(python, wav, speakers, threads, work, tag, warm=False, first=""):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    hyp, err = os.path.join(work, f"{tag}.senko.rttm"), os.path.join(work, f"{tag}.senko.log")
    raw = os.path.join(work, f"{tag}.senko-raw.rttm")
    cmd = [python, "-c", PEER_DRIVER, wav, "1" if warm else "0", str(speakers or 0), str(threads or 0), raw, first]
    wall, rss, rc = run(cmd, env, hyp, err)
    text = open(err).read()
    if rc:
        die(f"senko failed ({rc}) on {wav}:\n{text[-2000:]}")
    info = json.loads(text.strip().splitlines()[-1])
    return {"wall": wall, "rss": rss, "hyp": hyp, "raw": raw, "core": info["core_s"],
            "load": info["import_s"] + info["load_s"], "info": info}


def der(python, ref, hyp, uem):
    r = subprocess.run([python, os.path.join(ROOT, "scripts/der.py"), ref, hyp, uem],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        die(f"der.py failed on {hyp}:\n{r.stderr}")
    return json.loads(r.stdout)


def der_python(explicit):
    if explicit:
        return explicit
    python = os.path.join(ROOT, ".venv", "bin", "python")
    check = lambda: os.access(python, os.X_OK) and subprocess.run(
        [python, "-c", "import pyannote.metrics"], stderr=subprocess.DEVNULL).returncode == 0
    if not check():
        log("setting up .venv (scripts/setup-python.sh) for pyannote.metrics")
        subprocess.run(["bash", os.path.join(ROOT, "scripts/setup-python.sh")], check=True, stdout=sys.stderr)
    return python


# --- main ------------------------------------------------------------------

def fmt_pct(x):
    return "–" if x is None else f"{100 * x:.1f} %"


def ratio(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}×"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--long-minutes", type=float, action="append",
                   help="add a long file of N minutes (default 10; 0: none; repeatable)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="only this sample (repeatable; long-Nmin and conv-3spk-seed1 count)")
    p.add_argument("--skip-peer", action="store_true", help="ours alone")
    p.add_argument("--skip-ours", action="store_true", help="the peer alone")
    p.add_argument("--synthetic", action="store_true", help="add the espeak-ng 3-speaker conversation")
    p.add_argument("--runs", type=int, default=1, help="timed runs per system and file (median shown)")
    p.add_argument("--threads", type=int, default=0, help="threads for both (default: each its own default)")
    p.add_argument("--oracle-speakers", action="store_true", help="give both the reference speaker count")
    p.add_argument("--ours", help="our diarize binary (default: the example in CARGO_TARGET_DIR)")
    p.add_argument("--peer-python", help="a python with senko 0.2.2 (default: the bench venv, made when missing)")
    p.add_argument("--venv-python", default=sys.executable if sys.version_info[:2] <= (3, 13) else "python3",
                   help="the python the bench venv is made from")
    p.add_argument("--der-python", help="a python with pyannote.metrics (default: .venv, set up when missing)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--no-warmup", action="store_true", help="no untimed first run")
    p.add_argument("--peer-warm", action="store_true",
                   help="also time senko's diarize() after a first call in the same process (one more run per file)")
    a = p.parse_args()

    longs = a.long_minutes if a.long_minutes is not None else [10.0]
    names = list(REAL)
    if a.synthetic or (a.only and "conv-3spk-seed1" in a.only):
        names.append("conv-3spk-seed1")
    names += [f"long-{m:g}min" for m in longs if m > 0]
    if a.only:
        unknown = [n for n in a.only if n not in names and not re.fullmatch(r"long-[0-9.]+min", n)]
        if unknown:
            die(f"unknown sample(s): {' '.join(unknown)}; known: {' '.join(names)}")
        names = [n for n in a.only]
    ensure_samples([n for n in names if n in REAL] + ["jfk-single"])
    for n in names:
        if n.startswith("long-"):
            build_long(float(n[5:-3]))
        elif n == "conv-3spk-seed1":
            build_synthetic()

    ours = None if a.skip_ours else find_ours(a.ours)
    if not a.skip_ours:
        # The models, and the release example when none is built yet.
        subprocess.run(["bash", os.path.join(ROOT, "scripts/install-diarization.sh")], check=True)
        if not ours and not a.ours:
            subprocess.run(["cargo", "build", "--release", "-p", "pipeline-diarize", "--example", "diarize"],
                           cwd=ROOT, check=True,
                           env={**os.environ, "CARGO_TARGET_DIR": os.environ.get(
                               "CARGO_TARGET_DIR", os.path.expanduser("~/.cache/pipeline-manager/target"))})
            ours = find_ours(None)
    if not a.skip_ours and not ours:
        die("our diarize binary is not built: cargo build --release -p pipeline-diarize --example diarize "
            "(or --ours PATH, or --skip-ours)")
    peer = None if a.skip_peer else (a.peer_python or ensure_peer_venv(PEER_VENV, a.venv_python))
    if ours is None and peer is None:
        die("nothing to run")
    der_py = der_python(a.der_python)
    work = os.path.join(CACHE, "bench-diarization")
    os.makedirs(work, exist_ok=True)

    load_start = os.getloadavg()
    if not a.no_warmup:
        jfk = os.path.join(SAMPLES, "jfk-single.wav")
        if ours:
            log("warm-up: ours on jfk-single")
            run_ours(ours, jfk, None, a.threads, work, "warmup")
        if peer:
            # senko's own warm-up (CAM++ and UMAP+HDBSCAN) fills numba's
            # cache for the UMAP path that files of 20 min and more take.
            big = any(wav_seconds(os.path.join(SAMPLES, f"{n}.wav")) >= 1200 for n in names)
            log("warm-up: senko on jfk-single" + (" (with senko's own warm-up)" if big else ""))
            run_peer(peer, jfk, None, a.threads, work, "warmup", warm=big)

    results = []
    for n in names:
        wav, ref, uem = (os.path.join(SAMPLES, f"{n}.{e}") for e in ("wav", "rttm", "uem"))
        seconds = wav_seconds(wav)
        ref_turns = read_rttm(ref)
        ref_speakers = len({s for _, _, s in ref_turns})
        speakers = ref_speakers if a.oracle_speakers else None
        row = {"name": n, "seconds": seconds, "ref_speakers": ref_speakers}
        for system, go in (("ours", ours and (lambda i: run_ours(ours, wav, speakers, a.threads, work, f"{n}.{i}"))),
                           ("senko", peer and (lambda i: run_peer(peer, wav, speakers, a.threads, work, f"{n}.{i}")))):
            if not go:
                continue
            runs = []
            for i in range(a.runs):
                log(f"{n} ({seconds:.0f} s): {system}, run {i + 1}/{a.runs}")
                runs.append(go(i))
            best = runs[0]
            r = {"wall": statistics.median(x["wall"] for x in runs), "walls": [x["wall"] for x in runs],
                 "rss": max(x["rss"] for x in runs), "core": statistics.median(x["core"] for x in runs if x["core"] is not None) if all(x["core"] is not None for x in runs) else None,
                 "load": best["load"], "hyp": best["hyp"], "der": der(der_py, ref, best["hyp"], uem)}
            if system == "senko":
                r["der_raw"] = der(der_py, ref, best["raw"], uem)
                r["info"] = best["info"]
            if system == "senko" and a.peer_warm:
                log(f"{n}: senko, warm")
                w = run_peer(peer, wav, speakers, a.threads, work, f"{n}.warm",
                             first=os.path.join(SAMPLES, "jfk-single.wav"))
                r["core_warm"] = w["core"]
            row[system] = r
            log(f"  {system}: wall {r['wall']:.1f} s, RSS {r['rss']:.0f} MiB, DER {fmt_pct(r['der']['der'])}, "
                f"{r['der']['hyp_speakers']} speakers")
        results.append(row)
    load_end = os.getloadavg()

    # --- report
    binary = ours and os.path.relpath(ours, os.path.join(CACHE, "target")) if ours else None
    print(f"Diarization, ours ({binary or 'not run'}) vs senko 0.2.2 on CPU "
          f"(torch 2.8.0, silero VAD, CAM++, spectral < 20 min / UMAP+HDBSCAN); "
          f"{os.cpu_count()} cores, load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end; "
          f"DER: pyannote.metrics 4.2.0, collar 0.25 (±0.125 s), overlap scored, UEM the whole file"
          f"{'; both told the speaker count' if a.oracle_speakers else ''}"
          f"{f'; median of {a.runs} runs' if a.runs > 1 else ''}.")
    print()
    print("| audio | length | speakers (ref / ours / senko) | DER ours | DER senko | wall ours | wall senko | time ours/senko | peak RSS ours | peak RSS senko | RSS ours/senko |")
    print("|---|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        o, s = row.get("ours"), row.get("senko")
        g = lambda r, k: r and r[k]
        spk = f"{row['ref_speakers']} / {o['der']['hyp_speakers'] if o else '–'} / {s['der']['hyp_speakers'] if s else '–'}"
        sec = lambda r: f"{r['wall']:.1f} s" if r else "–"
        mib = lambda r: f"{r['rss']:.0f} MiB" if r else "–"
        print(f"| {row['name']} | {row['seconds']:.0f} s | {spk} "
              f"| {fmt_pct(o and o['der']['der'])} | {fmt_pct(s and s['der']['der'])} "
              f"| {sec(o)} | {sec(s)} | {ratio(g(o, 'wall'), g(s, 'wall'))} "
              f"| {mib(o)} | {mib(s)} | {ratio(g(o, 'rss'), g(s, 'rss'))} |")
    print()
    print("Details: DER parts in seconds of the scored reference speech (missed / false alarm / confusion); "
          "core = the diarization alone as each reports it (ours: after loading its models; senko: diarize()), "
          "load = start-up and models; senko raw = its unmerged segments"
          + ("; core warm = senko's diarize() when it is not the process's first call." if a.peer_warm else "."))
    print()
    warm_col = a.peer_warm
    print("| audio | system | DER | missed | false alarm | confusion | scored | core | " + ("core warm | " if warm_col else "")
          + "load | real-time factor (wall) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if warm_col else "") + "---:|---:|")
    for row in results:
        for system in ("ours", "senko", "senko raw"):
            r = row.get(system.split()[0])
            if not r:
                continue
            d = r["der_raw"] if system == "senko raw" else r["der"]
            core = "–" if r.get("core") is None or system == "senko raw" else f"{r['core']:.1f} s"
            load = "–" if r.get("load") is None or system == "senko raw" else f"{r['load']:.1f} s"
            rtf = "–" if system == "senko raw" else f"{r['wall'] / row['seconds']:.3f}"
            warm = ""
            if warm_col:
                cw = r.get("core_warm")
                warm = ("–" if cw is None or system == "senko raw" else f"{cw:.1f} s") + " | "
            print(f"| {row['name']} | {system} | {fmt_pct(d['der'])} | {d['missed']:.1f} | {d['false_alarm']:.1f} "
                  f"| {d['confusion']:.1f} | {d['total']:.1f} | {core} | {warm}{load} | {rtf} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "ours": ours, "peer_python": peer,
                       "loadavg": [load_start, load_end], "cores": os.cpu_count(),
                       "oracle_speakers": a.oracle_speakers, "threads": a.threads}, f, indent=1)


if __name__ == "__main__":
    main()
