"""Batched transcription against faster-whisper, same model, audio, beam,
compute type and threads, in one run: our `transcribe` in sequential and
batched mode, faster-whisper's `transcribe()` and its
`BatchedInferencePipeline` (batch 8, its Silero VAD). Whole processes,
alternating, medians of BENCH_RUNS: wall time, x real time, WER, peak RSS.

Usage: bench_batched.py PIPELINE_MANAGER MODEL_DIR FASTER_WHISPER_PYTHON AUDIO_LABEL=WAV:TXT...
Writes a Markdown table on stdout.
"""
import os
import re
import sys
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine import median, run, wer  # noqa: E402

# Fillers the references of spontaneous speech spell out and Whisper leaves out.
FILLERS = {"uh", "um", "hm", "mm", "yknow"}

FW = """
import sys
from faster_whisper import BatchedInferencePipeline, WhisperModel
model_dir, audio, threads, mode = sys.argv[1:5]
m = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=int(threads))
if mode == "batched":
    segments, _ = BatchedInferencePipeline(m).transcribe(audio, beam_size=5, batch_size=8)
else:
    segments, _ = m.transcribe(audio, beam_size=5)
print(" ".join(s.text.strip() for s in segments))
"""


def plain(text):
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()
    return " ".join(w for w in words if w not in FILLERS)


def main():
    ours, model, fw_python = sys.argv[1:4]
    audios = [a.split("=", 1) for a in sys.argv[4:]]
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    threads = str(os.cpu_count() or 1)
    env = dict(os.environ, PIPELINE_MODEL=model, PIPELINE_MODEL_THREADS=threads)
    fw_env = dict(os.environ, HF_HUB_OFFLINE="1")
    sides = [
        ("ours, sequential", lambda a: [ours, "transcribe", "--mode", "sequential", a], env),
        ("ours, batched", lambda a: [ours, "transcribe", "--mode", "batched", "--batch-size", "8", a], env),
        ("faster-whisper, sequential", lambda a: [fw_python, "-c", FW, model, a, threads, "sequential"], fw_env),
        ("faster-whisper, batched", lambda a: [fw_python, "-c", FW, model, a, threads, "batched"], fw_env),
    ]
    rows = []
    for label, spec in audios:
        audio, reference_file = spec.split(":", 1)
        reference = plain(open(reference_file).read())
        with wave.open(audio) as w:
            duration = w.getnframes() / w.getframerate()
        results = {side: [] for side, _, _ in sides}
        for _ in range(runs):
            for side, argv, side_env in sides:
                results[side].append(run(argv(audio), side_env))
        for side, _, _ in sides:
            rows.append((label, duration, side,
                         median(r[1] for r in results[side]),
                         median(r[2] for r in results[side]),
                         wer(reference, plain(results[side][0][0]))))
        print(f"bench-batched: {label} done", file=sys.stderr, flush=True)
    print(f"Medians of {runs} runs each, alternating; {threads} threads.\n")
    print("| audio | side | wall (x real time) | time / fw sequential | time / fw batched "
          "| peak RSS (/ fw batched) | WER |")
    print("|---|---|---|---|---|---|---|")
    for label, d, side, wall, rss, w in rows:
        seq = next(r for r in rows if r[0] == label and r[2] == "faster-whisper, sequential")
        bat = next(r for r in rows if r[0] == label and r[2] == "faster-whisper, batched")
        print(f"| {label} ({d / 60:.1f} min) | {side} | {wall:.1f} s ({d / wall:.0f}x) "
              f"| {wall / seq[3]:.2f} | {wall / bat[3]:.2f} | {rss:.0f} MiB ({rss / bat[4]:.2f}) | {w:.1%} |")


if __name__ == "__main__":
    main()
