#!/usr/bin/env python3
"""Faults against the real binary, PostgreSQL and a broker, while files run.

Submits FILES recordings cut from the long fixture (no two alike, so none
is deduplicated; 22-33 s each unless --clip says otherwise), runs WORKERS
workers, and injects one kind of fault:

  kill              SIGKILL a random worker every 3-7 s and start a
                    replacement at once, KILLS times (then the workers left
                    finish the work)
  broker-restart    once a third of the files is done, the broker goes
                    down for DOWN seconds and comes back (Redis: a private
                    server on a free port, killed and started again, so it
                    forgets every message; RabbitMQ: stop_app / start_app)
  postgres-restart  the same for PostgreSQL: a private cluster (initdb in a
                    temporary folder, run as the postgres user) stopped and
                    started again
  none              no fault (for example 1,000 short files: --clip 2-5)

Reports, as one JSON line: files submitted / completed / FAILED / stuck,
jobs that completed twice, lost leases absorbed, the times to the first and
the median completed file, the longest stretch with no file completing
after the first, the time from the fault's end to the next completion, and
the wall time. Every count is read from the database itself.

usage: fault_storm.py BINARY --broker redis|amqp|embedded
       [--fault kill|broker-restart|postgres-restart|none] [--files 30]
       [--kills 50] [--lease 10] [--workers 2] [--concurrency 1]
       [--clip 22-33] [--down 5] [--timeout 900]
Needs PostgreSQL on 127.0.0.1:5432 (or its binaries, for postgres-restart),
the broker, and ffmpeg for the files.
"""

import argparse
import glob
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"nothing listens on port {port}")


class PrivateRedis:
    """A Redis of our own that can be taken down without touching others."""

    def __init__(self):
        self.port = free_port()
        self.child = None
        self.up()

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def up(self):
        self.child = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_port(self.port)

    def down(self):
        self.child.kill()
        self.child.wait()

    def close(self):
        if self.child.poll() is None:
            self.down()


class SharedRabbit:
    """The machine's RabbitMQ: its application stopped and started."""

    def url(self):
        return BROKERS["amqp"]

    def down(self):
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, stdout=subprocess.DEVNULL)

    def up(self):
        subprocess.run(["rabbitmqctl", "start_app"], check=True, stdout=subprocess.DEVNULL)

    def close(self):
        subprocess.run(["rabbitmqctl", "start_app"], stdout=subprocess.DEVNULL)


class PrivatePostgres:
    """A PostgreSQL cluster of our own, run by the postgres user."""

    def __init__(self, work):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            sys.exit("no PostgreSQL binaries under /usr/lib/postgresql")
        self.bin = Path(bins[-1])
        self.dir = work / "pg"
        self.dir.mkdir()
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self.as_postgres([self.bin / "initdb", "-D", self.dir / "data", "-A", "trust", "-U",
                          "postgres"])
        self.up()

    def as_postgres(self, argv):
        cmd = [str(a) for a in argv]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def up(self):
        self.as_postgres([self.bin / "pg_ctl", "-D", self.dir / "data", "-l", self.dir / "log",
                          "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                          "-w", "start"])

    def down(self):
        self.as_postgres([self.bin / "pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w",
                          "stop"])

    def close(self):
        try:
            self.down()
        except subprocess.CalledProcessError:
            pass


def shared_postgres_url():
    base = os.environ.get("PIPELINE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    schema = f"pm_storm_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", base, "-q", "-c", f"CREATE SCHEMA {schema}"], check=True)
    return f"{base}?options=-c%20search_path%3D{schema}"


def make_files(folder, count, shortest, longest):
    source = ROOT / "fixtures/generated/long-1min.wav"
    if not source.exists():
        subprocess.run(["bash", str(ROOT / "scripts/make-fixtures.sh"), "long"], check=True)
    files = []
    for i in range(count):
        out = folder / f"talk-{i:04}.wav"
        length = shortest + (i % (longest - shortest + 1))
        # Starts a fraction of a second apart: no two files are alike.
        start = (i * 0.173) % (58 - length)
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-ss", f"{start:.3f}", "-t", str(length),
             "-i", str(source), str(out)],
            check=True,
        )
        files.append(out)
    return files


def sql(url, query):
    """Rows of `query` as lists of strings (psql, unaligned)."""
    out = subprocess.run(["psql", url, "-At", "-F", "\t", "-c", query], capture_output=True,
                         text=True)
    if out.returncode != 0:
        return None
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def when(stamp):
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--broker", choices=["redis", "amqp", "embedded"], default="redis")
    parser.add_argument("--fault", choices=["kill", "broker-restart", "postgres-restart", "none"],
                        default="kill")
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--lease", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--clip", default="22-33", help="shortest-longest seconds")
    parser.add_argument("--down", type=float, default=5.0)
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    shortest, longest = (int(x) for x in args.clip.split("-"))

    work = Path(tempfile.mkdtemp(prefix="storm-"))
    os.chmod(work, 0o755)
    env = dict(os.environ)
    # The workers' data directory is new: the installed model is named.
    env.setdefault("PIPELINE_MODEL", str(Path.home() / ".local/share/pipeline-manager/models/tiny.en"))
    broker = None
    if args.broker == "redis":
        # Private when it is to be restarted: the machine's Redis serves others.
        broker = PrivateRedis() if args.fault == "broker-restart" else None
        env["PIPELINE_BROKER_URL"] = broker.url() if broker else BROKERS["redis"]
    elif args.broker == "amqp":
        broker = SharedRabbit() if args.fault == "broker-restart" else None
        env["PIPELINE_BROKER_URL"] = BROKERS["amqp"]
    elif args.fault == "broker-restart":
        sys.exit("the embedded queue has no broker to restart")
    postgres = PrivatePostgres(work) if args.fault == "postgres-restart" else None
    db_url = postgres.url() if postgres else shared_postgres_url()
    env.update({
        "PIPELINE_DATA_DIR": str(work / "data"),
        "PIPELINE_DATABASE_URL": db_url,
        "PIPELINE_PROCESSING_LEASE_SECS": str(args.lease),
        "PIPELINE_PROCESSING_HEARTBEAT_SECS": "2",
        "PIPELINE_BROKER_QUEUE": f"storm-{uuid.uuid4().hex[:8]}",
    })
    files = make_files(work, args.files, shortest, longest)

    logs = work / "logs"
    logs.mkdir()
    spawned = 0
    workers = []

    def spawn():
        nonlocal spawned
        spawned += 1
        log = open(logs / f"worker-{spawned}.log", "w")
        return subprocess.Popen([args.binary, "worker", "--concurrency", str(args.concurrency)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)

    def completed_times():
        rows = sql(db_url, "SELECT completed_at FROM processing_jobs "
                           "WHERE job_type = 'PROCESSING' AND status = 'COMPLETED'")
        return [when(r[0]) for r in rows] if rows is not None else None

    try:
        started = time.time()
        out = subprocess.run([args.binary, "--json", "process", "--detach", *map(str, files)],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"submit failed: {out.stderr}")
        ids = [f["audio_id"] for f in json.loads(out.stdout)["files"]]
        workers = [spawn() for _ in range(args.workers)]
        fault_over = None
        if args.fault == "kill":
            rng = random.Random(7)
            for _ in range(args.kills):
                time.sleep(rng.uniform(3, 7))
                victim = workers.pop(rng.randrange(len(workers)))
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                workers.append(spawn())
            fault_over = time.time()
        elif args.fault in ("broker-restart", "postgres-restart"):
            target = broker if args.fault == "broker-restart" else postgres
            while len(completed_times() or []) < args.files // 3:
                time.sleep(0.5)
            target.down()
            time.sleep(args.down)
            target.up()
            fault_over = time.time()

        deadline = time.time() + args.timeout
        while time.time() < deadline:
            rows = sql(db_url, "SELECT count(*) FROM audio_files WHERE status NOT IN "
                               "('COMPLETED', 'FAILED', 'CANCELLED')")
            if rows is not None and rows[0][0] == "0":
                break
            time.sleep(2)
        settled = time.time()
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()

        status = dict(sql(db_url, "SELECT status, count(*) FROM audio_files GROUP BY status"))
        twice = sql(db_url, "SELECT job_id FROM job_events WHERE to_status = 'COMPLETED' "
                            "AND from_status <> 'COMPLETED' GROUP BY job_id HAVING count(*) > 1")
        lost = sql(db_url, "SELECT coalesce(sum(lost_leases), 0) FROM processing_jobs")
        reasons = sql(db_url, "SELECT error_message FROM processing_jobs "
                              "WHERE status = 'FAILED' LIMIT 5")
        done = sorted(t - started for t in completed_times() or [])
        gaps = [b - a for a, b in zip(done, done[1:])]
        after_fault = [t for t in done if fault_over and t >= fault_over - started]
        report = {
            "broker": args.broker,
            "fault": args.fault,
            "files": len(ids),
            "clip_secs": args.clip,
            "workers": f"{args.workers}x{args.concurrency}",
            "lease_secs": args.lease,
            "completed": int(status.get("COMPLETED", 0)),
            "failed": int(status.get("FAILED", 0)),
            "stuck": len(ids) - sum(int(status.get(s, 0))
                                    for s in ("COMPLETED", "FAILED", "CANCELLED")),
            "completed_twice": len(twice or []),
            "lost_leases": int(lost[0][0]) if lost else None,
            "first_completed_secs": round(done[0], 1) if done else None,
            "median_completed_secs": round(statistics.median(done), 1) if done else None,
            "longest_stall_secs": round(max(gaps), 1) if gaps else None,
            "fault_secs": round(fault_over - started, 1) if fault_over else None,
            "next_completed_after_fault_secs":
                round(after_fault[0] - (fault_over - started), 1) if after_fault else None,
            "wall_secs": round(settled - started, 1),
            "failed_reasons": [r[0] for r in reasons or []],
            "logs": str(logs),
        }
        print(json.dumps(report))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        for service in (broker, postgres):
            if service is not None:
                service.close()


if __name__ == "__main__":
    main()
