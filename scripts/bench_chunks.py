"""One long file on one worker against the same file in chunks on one and
on two workers: wall time from the workers' start to the file's COMPLETED,
x real time, and WER against the text read.

Usage: bench_chunks.py PIPELINE_MANAGER AUDIO REFERENCE_TXT [RUNS]
Every run has a fresh SQLite data directory (the embedded queue); the
workers are `pipeline-manager worker` processes. Writes a Markdown table.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine import median, wer  # noqa: E402

# (label, workers, threads per worker, chunk seconds)
SETUPS = [
    ("1 worker x 2 threads, one piece", 1, 2, 0),
    ("1 worker x 2 threads, chunks of 300 s", 1, 2, 300),
    ("2 workers x 1 thread, chunks of 300 s", 2, 1, 300),
]


def env_for(data, threads, chunk):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update({
        "PIPELINE_DATA_DIR": data,
        "PIPELINE_MODEL_THREADS": str(threads),
        "PIPELINE_PROCESSING_CHUNK_SECONDS": str(chunk),
        "PIPELINE_MODEL_MODE": os.environ.get("PIPELINE_MODEL_MODE", "sequential"),
        "NO_COLOR": "1",
    })
    return env


def one_run(binary, audio, workers, threads, chunk):
    with tempfile.TemporaryDirectory() as data:
        env = env_for(data, threads, chunk)
        out = subprocess.run([binary, "process", "--detach", "--json", audio],
                             env=env, check=True, capture_output=True, text=True).stdout
        audio_id = json.loads(out)["files"][0]["audio_id"]
        started = time.perf_counter()
        procs = [subprocess.Popen([binary, "worker"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(workers)]
        try:
            while True:
                time.sleep(1)
                doc = json.loads(subprocess.run([binary, "check-status", audio_id, "--json"],
                                                env=env, check=True, capture_output=True,
                                                text=True).stdout)
                if doc["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                    break
            wall = time.perf_counter() - started
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
        if doc["status"] != "COMPLETED":
            raise SystemExit(f"{audio}: {doc['status']}: {doc.get('error')}")
        text = open(doc["outputs"]["txt"]).read()
        return wall, text, doc["duration_seconds"]


def main():
    binary, audio, reference = sys.argv[1:4]
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    reference = open(reference).read()
    walls = {label: [] for label, *_ in SETUPS}
    texts = {}
    duration = 0.0
    for _ in range(runs):
        for label, workers, threads, chunk in SETUPS:
            wall, text, duration = one_run(binary, audio, workers, threads, chunk)
            print(f"{label}: {wall:.1f} s", file=sys.stderr, flush=True)
            walls[label].append(wall)
            texts[label] = text
    base = median(walls[SETUPS[0][0]])
    print(f"{os.path.basename(audio)}, {duration / 60:.1f} min, mode "
          f"{os.environ.get('PIPELINE_MODEL_MODE', 'sequential')}, {runs} run(s)\n")
    print("| setup | wall | x real time | time / one piece | WER |")
    print("|---|---|---|---|---|")
    for label, *_ in SETUPS:
        w = median(walls[label])
        print(f"| {label} | {w:.1f} s | {duration / w:.1f}x | {w / base:.2f} | "
              f"{100 * wer(reference, texts[label]):.1f}% |")


if __name__ == "__main__":
    main()
