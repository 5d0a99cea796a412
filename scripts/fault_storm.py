#!/usr/bin/env python3
"""A storm of worker deaths against the real binary, database and broker.

Submits FILES recordings of 22-33 s (cut from the long fixture, so that no
two are alike and none is deduplicated), runs two workers of concurrency 1,
and SIGKILLs a random one every 3-7 s, starting a replacement at once, KILLS
times. Then two workers finish the work. Reports, as one JSON line: files
submitted / completed / FAILED / stuck, jobs that completed twice, the
longest a job took to finish after the storm ended, and the wall time.

usage: fault_storm.py BINARY --broker redis|amqp|embedded [--files 30]
       [--kills 50] [--lease 10] [--timeout 900]
Needs PostgreSQL on 127.0.0.1:5432 and the broker; ffmpeg for the files.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BROKERS = {
    "redis": "redis://127.0.0.1:6379/3",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/%2f",
}


def postgres_url():
    base = os.environ.get("PIPELINE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    schema = f"pm_storm_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", base, "-q", "-c", f"CREATE SCHEMA {schema}"], check=True)
    return f"{base}?options=-c%20search_path%3D{schema}"


def make_files(folder, count):
    source = ROOT / "fixtures/generated/long-1min.wav"
    if not source.exists():
        subprocess.run(["bash", str(ROOT / "scripts/make-fixtures.sh"), "long"], check=True)
    files = []
    for i in range(count):
        out = folder / f"talk-{i:03}.wav"
        start = (i * 7) % 30
        length = 22 + (i % 12)
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-ss", str(start), "-t", str(length),
             "-i", str(source), str(out)],
            check=True,
        )
        files.append(out)
    return files


def run(binary, env, *args):
    out = subprocess.run([binary, *args], env=env, capture_output=True, text=True)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--broker", choices=["redis", "amqp", "embedded"], default="redis")
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--lease", type=int, default=10)
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="storm-"))
    env = dict(os.environ)
    # The workers' data directory is new: the installed model is named.
    env.setdefault("PIPELINE_MODEL", str(Path.home() / ".local/share/pipeline-manager/models/tiny.en"))
    env.update({
        "PIPELINE_DATA_DIR": str(work / "data"),
        "PIPELINE_DATABASE_URL": postgres_url(),
        "PIPELINE_PROCESSING_LEASE_SECS": str(args.lease),
        "PIPELINE_PROCESSING_HEARTBEAT_SECS": "2",
        "PIPELINE_BROKER_QUEUE": f"storm-{uuid.uuid4().hex[:8]}",
    })
    if args.broker != "embedded":
        env["PIPELINE_BROKER_URL"] = BROKERS[args.broker]
    files = make_files(work, args.files)
    started = time.monotonic()
    out = run(args.binary, env, "--json", "process", "--detach", *map(str, files))
    if out.returncode != 0:
        sys.exit(f"submit failed: {out.stderr}")
    ids = [f["audio_id"] for f in json.loads(out.stdout)["files"]]

    logs = work / "logs"
    logs.mkdir()
    spawned = 0

    def spawn():
        nonlocal spawned
        spawned += 1
        log = open(logs / f"worker-{spawned}.log", "w")
        return subprocess.Popen([args.binary, "worker", "--concurrency", "1"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)

    workers = [spawn(), spawn()]
    rng = random.Random(7)
    for _ in range(args.kills):
        time.sleep(rng.uniform(3, 7))
        victim = workers.pop(rng.randrange(len(workers)))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        workers.append(spawn())
    storm_over = time.monotonic()

    def statuses():
        doc = json.loads(run(args.binary, env, "--json", "list-recent", "--limit",
                             str(args.files + 10)).stdout)
        return {f["id"]: f["status"] for f in doc["files"]}

    final = {}
    while time.monotonic() - storm_over < args.timeout:
        final = statuses()
        if all(final.get(i) in ("COMPLETED", "FAILED", "CANCELLED") for i in ids):
            break
        time.sleep(2)
    settled = time.monotonic()
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()

    twice = 0
    failed_reasons = []
    lost = 0
    for i in ids:
        doc = json.loads(run(args.binary, env, "--json", "jobs", i, "--events").stdout)
        per_job = {}
        for e in doc.get("events", []):
            if e["to_status"] == "COMPLETED" and e["from_status"] != "COMPLETED":
                per_job[e["job_id"]] = per_job.get(e["job_id"], 0) + 1
        twice += sum(1 for n in per_job.values() if n > 1)
        status = json.loads(run(args.binary, env, "--json", "check-status", i).stdout)
        for job in status.get("jobs", []):
            lost += job.get("lost_leases", 0)
            if job["status"] == "FAILED":
                failed_reasons.append((job.get("error") or {}).get("message"))
    report = {
        "broker": args.broker,
        "files": args.files,
        "kills": args.kills,
        "lease_secs": args.lease,
        "completed": sum(1 for i in ids if final.get(i) == "COMPLETED"),
        "failed": sum(1 for i in ids if final.get(i) == "FAILED"),
        "stuck": sum(1 for i in ids if final.get(i) not in ("COMPLETED", "FAILED", "CANCELLED")),
        "completed_twice": twice,
        "lost_leases": lost,
        "storm_secs": round(storm_over - started, 1),
        "after_storm_secs": round(settled - storm_over, 1),
        "wall_secs": round(settled - started, 1),
        "failed_reasons": failed_reasons[:5],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
