"""One replica of all the cores against one replica per core, on this
machine: our `transcribe` of one file with 1 thread and with all of them,
and our `process` of many short files with `--concurrency 1` (one replica,
every thread) against `--concurrency N` (N replicas of one thread), in each
decoding mode. Whole processes, alternating, medians of BENCH_RUNS.

Usage: bench_replicas.py PIPELINE_MANAGER MODEL_DIR WAV TXT
The short files are WAV cut into 30 s pieces. Writes a Markdown table.
"""
import glob
import os
import subprocess
import sys
import tempfile
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine import median, run, wer  # noqa: E402
from bench_batched import plain  # noqa: E402


def main():
    ours, model, audio, reference_file = sys.argv[1:5]
    reference = plain(open(reference_file).read())
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    cores = os.cpu_count() or 1
    with wave.open(audio) as w:
        duration = w.getnframes() / w.getframerate()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pieces_dir = os.path.join(tmp, "pieces")
        os.mkdir(pieces_dir)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", audio, "-f", "segment",
                        "-segment_time", "30", "-c", "copy", f"{pieces_dir}/p%03d.wav"], check=True)
        pieces = sorted(glob.glob(f"{pieces_dir}/p*.wav"))

        def env_for(threads, data):
            return dict(os.environ, PIPELINE_MODEL=model, PIPELINE_MODEL_THREADS=str(threads),
                        PIPELINE_DATA_DIR=data)

        sides = []
        for mode in ("sequential", "batched"):
            for threads in (cores, 1):
                plural = "s" if threads > 1 else ""
                sides.append((f"one file, {mode}, 1 replica x {threads} thread{plural}",
                              lambda data, m=mode: [ours, "transcribe", "--mode", m, audio],
                              threads, None))
            sides.append((f"{len(pieces)} files, {mode}, 1 replica x {cores} threads",
                          lambda data, m=mode: [ours, "process", "--mode", m, "--concurrency", "1",
                                                "--formats", "txt", *pieces], cores, "txt"))
            sides.append((f"{len(pieces)} files, {mode}, {cores} replicas x 1 thread",
                          lambda data, m=mode: [ours, "process", "--mode", m, "--concurrency",
                                                str(cores), "--formats", "txt", *pieces], 1, "txt"))
        results = {label: [] for label, _, _, _ in sides}
        texts = {}
        for i in range(runs):
            for label, argv, threads, outputs in sides:
                data = os.path.join(tmp, f"data-{i}-{len(results[label])}-{abs(hash(label))}")
                os.mkdir(data)
                out, wall, rss = run(argv(data), env_for(threads, data))
                results[label].append((wall, rss))
                if outputs:
                    # The pieces' transcripts (named after them) in their order.
                    found = sorted(glob.glob(f"{data}/outputs/*/*.txt"), key=os.path.basename)
                    if len(found) != len(pieces):
                        raise SystemExit(f"{label}: {len(found)} transcripts for {len(pieces)} files")
                    out = " ".join(open(path).read() for path in found)
                texts[label] = out
            print(f"bench-replicas: run {i + 1} done", file=sys.stderr, flush=True)
    print(f"Medians of {runs} runs each, alternating; {cores} cores; "
          f"{duration / 60:.1f} min of audio.\n")
    print("| work | wall (x real time) | peak RSS | WER |")
    print("|---|---|---|---|")
    for label, _, _, _ in sides:
        wall = median(r[0] for r in results[label])
        rss = median(r[1] for r in results[label])
        print(f"| {label} | {wall:.1f} s ({duration / wall:.0f}x) | {rss:.0f} MiB "
              f"| {wer(reference, plain(texts[label])):.1%} |")


if __name__ == "__main__":
    main()
