#!/usr/bin/env python3
"""How soon files complete when a folder is dropped at once.

Queues COUNT copies of a short recording on the embedded default (SQLite,
no services) or, with --broker, as Celery messages on the machine's Redis
or RabbitMQ (a queue of its own), runs `worker --concurrency 2` until all
are done, and reports as one JSON line the time to the first, the median
and the last completed file, from the files' own completion times in the
database.

usage: bench_fairness.py BINARY [--count 300] [--broker embedded|redis|amqp]
       [--file fixtures/generated/speech.wav]
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BROKERS = {
    "redis": "redis://127.0.0.1:6379/3",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/%2f",
}


def when(stamp):
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--broker", choices=["embedded", *BROKERS], default="embedded")
    parser.add_argument("--file", default=str(ROOT / "fixtures/generated/speech.wav"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fairness-"))
    env = dict(os.environ, PIPELINE_DATA_DIR=str(work / "data"))
    if args.broker != "embedded":
        env["PIPELINE_BROKER_URL"] = BROKERS[args.broker]
        env["PIPELINE_BROKER_QUEUE"] = f"fairness-{uuid.uuid4().hex[:8]}"
    # The data directory is new: the installed model is named.
    env.setdefault("PIPELINE_MODEL", str(Path.home() / ".local/share/pipeline-manager/models/tiny.en"))
    inbox = work / "inbox"
    inbox.mkdir()
    for i in range(args.count):
        shutil.copy(args.file, inbox / f"talk-{i:04}.wav")
    subprocess.run([args.binary, "process", "--detach", str(inbox)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    started = time.time()
    worker = subprocess.Popen([args.binary, "worker", "--concurrency", "2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def recent():
        return json.loads(subprocess.run(
            [args.binary, "--json", "list-recent", "--limit", str(args.count + 10)],
            env=env, check=True, capture_output=True, text=True).stdout)

    while True:
        doc = recent()
        if all(f["status"] in ("COMPLETED", "FAILED") for f in doc["files"]):
            break
        time.sleep(1)
    wall = time.time() - started
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    done = sorted(when(f["updated_at"]) - started for f in doc["files"] if f["status"] == "COMPLETED")
    print(json.dumps({
        "broker": args.broker,
        "files": args.count,
        "completed": len(done),
        "first_completed_secs": round(done[0], 1) if done else None,
        "median_completed_secs": round(statistics.median(done), 1) if done else None,
        "last_completed_secs": round(done[-1], 1) if done else None,
        "wall_secs": round(wall, 1),
    }))


if __name__ == "__main__":
    main()
