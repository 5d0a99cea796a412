"""Our engine against faster-whisper, same model, same audio, same machine,
same run: wall time, real-time factor and word error rate.

Usage: bench_engine.py PIPELINE_MANAGER MODEL_DIR FASTER_WHISPER_PYTHON
Writes a Markdown table on stdout.
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def words(text):
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def wer(reference, hypothesis):
    r, h = words(reference), words(hypothesis)
    row = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, row[0] = row[0], i
        for j in range(1, len(h) + 1):
            cur = min(row[j] + 1, row[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev, row[j] = row[j], cur
    return row[len(h)] / max(1, len(r))


def run(cmd, env=None):
    """Runs a whole process; returns its stdout, wall seconds and peak RSS (MiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    out = proc.stdout.read()
    # wait4 reaps the process and gives its own rusage (peak RSS).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} failed with {proc.returncode}")
    return out, wall, usage.ru_maxrss / 1024


FW = """
import sys
from faster_whisper import WhisperModel
m = WhisperModel(sys.argv[1], device="cpu", compute_type="int8", cpu_threads=int(sys.argv[3]))
segments, _ = m.transcribe(sys.argv[2], beam_size=5)
print(" ".join(s.text.strip() for s in segments))
"""


LICENCES = ["/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/GPL-2",
            "/usr/share/common-licenses/Apache-2.0"]


def licence_speech(word_count, path):
    """The first words of the licence texts, read by espeak-ng at 160 words
    a minute: non-repeating English of any length."""
    text = " ".join(" ".join(open(f).read() for f in LICENCES).split()[:word_count])
    subprocess.run(["espeak-ng", "-s", "160", "-w", path, text], check=True)
    with wave.open(path) as w:
        duration = w.getnframes() / w.getframerate()
    return text, duration


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    ours, model, fw_python = sys.argv[1:4]
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    threads = str(os.cpu_count() or 1)
    env = dict(os.environ, PIPELINE_MODEL=model, PIPELINE_MODEL_THREADS=threads)
    # Sides: (label, argv before the audio path, environment).
    sides = [("ours", [ours, "transcribe"], env)]
    # Optional: another build of ours (BENCH_OURS_FROM_SOURCE=path, the
    # oneDNN-from-source engine) and the prebuilt library with MKL forced on
    # a non-Intel CPU (BENCH_MKL=1).
    if os.environ.get("BENCH_OURS_FROM_SOURCE"):
        sides.append(("ours, from source", [os.environ["BENCH_OURS_FROM_SOURCE"], "transcribe"], env))
    # BENCH_OURS_BEFORE=path: an earlier build of ours, the same engine.
    if os.environ.get("BENCH_OURS_BEFORE"):
        sides.append(("ours, before", [os.environ["BENCH_OURS_BEFORE"], "transcribe"], env))
    if os.environ.get("BENCH_MKL"):
        sides.append(("ours, CT2_USE_MKL=1", [ours, "transcribe"], dict(env, CT2_USE_MKL="1")))
    fw_env = dict(os.environ, HF_HUB_OFFLINE="1")
    sides.append(("faster-whisper", [fw_python, "-c", FW, model], fw_env))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, count in (("10 s", 16), ("10 min", 1600)):
            audio = os.path.join(tmp, f"licence-{count}.wav")
            reference, duration = licence_speech(count, audio)
            results = {side: [] for side, _, _ in sides}
            # Whole processes, alternating: model load, decode and
            # transcription, as a user of either tool would see it.
            for _ in range(runs):
                for side, argv, side_env in sides:
                    extra = [threads] if side == "faster-whisper" else []
                    results[side].append(run(argv + [audio] + extra, side_env))
            for side, _, _ in sides:
                rows.append((label, duration, side,
                             median(r[1] for r in results[side]),
                             median(r[2] for r in results[side]),
                             wer(reference, results[side][0][0])))
            print(f"bench-engine: {label} done", file=sys.stderr, flush=True)
    print(f"Medians of {runs} runs each, alternating.\n")
    print("| audio | engine | wall (x real time) | time / faster-whisper | peak RSS | WER |")
    print("|---|---|---|---|---|---|")
    fw = {label: (wall, rss) for label, _, side, wall, rss, _ in rows if side == "faster-whisper"}
    for label, d, side, wall, rss, w in rows:
        fw_wall, fw_rss = fw[label]
        print(f"| {label} ({d:.0f} s) | {side} | {wall:.1f} s ({d / wall:.1f}x) | {wall / fw_wall:.2f} "
              f"| {rss:.0f} MiB ({rss / fw_rss:.2f}) | {w:.1%} |")


if __name__ == "__main__":
    main()
