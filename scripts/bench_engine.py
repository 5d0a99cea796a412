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
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, count in (("10 s", 16), ("10 min", 1600)):
            audio = os.path.join(tmp, f"licence-{count}.wav")
            reference, duration = licence_speech(count, audio)
            env = dict(os.environ, PIPELINE_MODEL=model, PIPELINE_MODEL_THREADS=threads)
            fw_env = dict(os.environ, HF_HUB_OFFLINE="1")
            results = {"ours": [], "fw": []}
            # Whole processes, alternating: model load, decode and
            # transcription, as a user of either tool would see it.
            for _ in range(runs):
                results["ours"].append(run([ours, "transcribe", audio], env))
                results["fw"].append(run([fw_python, "-c", FW, model, audio, threads], fw_env))
            row = [label, duration]
            for side in ("ours", "fw"):
                text = results[side][0][0]
                row += [median(r[1] for r in results[side]), median(r[2] for r in results[side]),
                        wer(reference, text)]
            rows.append(row)
            print(f"bench-engine: {label} done", file=sys.stderr, flush=True)
    print(f"Medians of {runs} runs each, alternating.\n")
    print("| audio | ours: wall (x real time) | faster-whisper: wall (x real time) | time ours/fw "
          "| peak RSS ours / fw | WER ours | WER fw |")
    print("|---|---|---|---|---|---|---|")
    for label, d, ow, orss, owe, fw, frss, fwe in rows:
        print(f"| {label} ({d:.0f} s) | {ow:.1f} s ({d / ow:.1f}x) | {fw:.1f} s ({d / fw:.1f}x) "
              f"| {ow / fw:.2f} | {orss:.0f} / {frss:.0f} MiB ({orss / frss:.2f}) | {owe:.1%} | {fwe:.1%} |")


if __name__ == "__main__":
    main()
