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
FIXTURES = os.path.join(ROOT, "fixtures", "generated")


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


def synthesize(sentences, path):
    """Speech of known text, distinct sentences (repeated text would look
    like the decoding loop the engine guards against)."""
    text = " ".join(sentences)
    subprocess.run(["espeak-ng", "-s", "150", "-w", path, text], check=True)
    with wave.open(path) as w:
        duration = w.getnframes() / w.getframerate()
    return text, duration


def run(cmd, env=None):
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return out, time.perf_counter() - started


FW = """
import sys
from faster_whisper import WhisperModel
m = WhisperModel(sys.argv[1], device="cpu", compute_type="int8", cpu_threads=int(sys.argv[3]))
segments, _ = m.transcribe(sys.argv[2], beam_size=5)
print(" ".join(s.text.strip() for s in segments))
"""


def main():
    ours, model, fw_python = sys.argv[1:4]
    threads = str(os.cpu_count() or 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sentences = [l.strip() for l in open(os.path.join(ROOT, "fixtures", "sentences.txt")) if l.strip()]
        for count in (8, len(sentences)):
            audio = os.path.join(tmp, f"sentences-{count}.wav")
            reference, duration = synthesize(sentences[:count], audio)
            env = dict(os.environ, PIPELINE_MODEL=model, PIPELINE_MODEL_THREADS=threads)
            # Wall time of a whole process each: model load, decode and
            # transcription, as a user of either tool would see it.
            o_text, o_wall = run([ours, "transcribe", audio], env)
            f_text, f_wall = run(
                [fw_python, "-c", FW, model, audio, threads], dict(os.environ, HF_HUB_OFFLINE="1")
            )
            rows.append((duration, o_wall, f_wall, wer(reference, o_text), wer(reference, f_text)))
    print("| audio | ours: wall (x real time) | faster-whisper: wall (x real time) | time ratio ours/fw | WER ours | WER fw |")
    print("|---|---|---|---|---|---|")
    for d, ow, fw, owe, fwe in rows:
        print(f"| {d:.0f} s | {ow:.1f} s ({d / ow:.1f}x) | {fw:.1f} s ({d / fw:.1f}x) | {ow / fw:.2f} | {owe:.1%} | {fwe:.1%} |")


if __name__ == "__main__":
    main()
