"""Short jobs through a Celery broker: our worker against a Python Celery 5
worker with the same concurrency on the same broker, in one run.

    bench_queue.py [run] [--n 2000] [--concurrency 2] [--brokers redis,amqp]
                   [--sides ours,celery,tracked] [--order idle|backlog] [--out FILE]
    bench_queue.py celery-worker ...     (the Celery peers; started by `run`)

Per broker and side:

- ours: N PROCESSING jobs, each a real job (claimed in PostgreSQL,
  txt/srt/vtt/json/tsv rendered from a stored transcript, committed, then
  acknowledged) run by `pipeline-manager worker`;
- celery: N `pipeline.process` tasks sent by Celery's client to a Celery
  worker whose task only records its start and end (unless --celery-work
  files);
- tracked: the same seeded jobs and the same messages as ours, run by a
  Celery worker whose task does the same tracked job in Python with psycopg
  (`TrackedJobs`): the fair peer, a Celery system that keeps its jobs in
  PostgreSQL as the one this project replaces did.

Reported:

- jobs/s: N over first start to last end (the worker's rate);
- e2e jobs/s: N over the first enqueue to the last end;
- enqueue-to-start latency p50/p99: a job's start minus the start of the
  burst's enqueue, the same definition on both sides (our dispatch is one
  call, so it has no per-message send time). Celery's per-message latency
  (start minus its own send time, carried in its kwargs) is reported too.

With --order idle (the default) each worker is running and idle when the
burst is enqueued; with --order backlog the burst is enqueued first and the
worker started after it, so the latency then includes the worker's start.
Either way a burst of N queues behind the worker, so the latency percentiles
are mostly queueing time: p50 is about N/2 over the rate.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get(
    "CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache/pipeline-manager/target")
)
TASK = "pipeline.process"


def log(message):
    print(f"bench-queue: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the Celery peer


def celery_worker(argv):
    """A Celery 5 worker (threads pool) whose `pipeline.process` records its
    start and end, one JSON line per task, in --out."""
    p = argparse.ArgumentParser(prog="bench_queue.py celery-worker")
    p.add_argument("--broker", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--acks-late", action="store_true")
    p.add_argument("--work", choices=["none", "files", "tracked"], default="none")
    p.add_argument("--work-dir")
    p.add_argument("--postgres", help="with --work tracked: the seeded schema's database URL")
    p.add_argument("--pool", choices=["threads", "prefork"], default="threads")
    p.add_argument("--prefetch-multiplier", type=int, default=4)
    a = p.parse_args(argv)

    from celery import Celery
    from celery.signals import worker_ready

    app = Celery("bench", broker=a.broker)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_ignore_result=True,
        task_acks_late=a.acks_late,
        worker_prefetch_multiplier=a.prefetch_multiplier,
    )
    lock = threading.Lock()
    out = open(a.out, "a", buffering=1)

    def render(job_id):
        # Roughly our PROCESSING stage's file work: five small outputs written
        # atomically (temp file + rename) into a directory per job.
        folder = os.path.join(a.work_dir, job_id)
        os.makedirs(folder, exist_ok=True)
        text = "Benchmark file. The quick brown fox jumps over the lazy dog.\n"
        for ext in ("txt", "srt", "vtt", "json", "tsv"):
            path = os.path.join(folder, f"bench.{ext}")
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)

    tracker = TrackedJobs(a.postgres, a.work_dir, f"celery@{platform.node()}:{os.getpid()}") \
        if a.work == "tracked" else None

    @app.task(name=TASK, bind=True)
    def process(self, audio_id=None, job_id=None, enqueued_at=None, **_):
        start = time.time()
        if a.work == "files":
            render(job_id or self.request.id)
        elif tracker is not None:
            tracker.run(audio_id, job_id)
        end = time.time()
        line = json.dumps({"id": self.request.id, "enq": enqueued_at, "start": start, "end": end})
        with lock:
            out.write(line + "\n")

    @worker_ready.connect
    def ready(**_):
        with open(a.ready, "w") as f:
            f.write(str(os.getpid()))

    app.worker_main([
        "worker", "--queues", a.queue, "--concurrency", str(a.concurrency),
        "--pool", a.pool, "--loglevel", "WARNING", "--without-gossip",
        "--without-mingle", "--without-heartbeat",
    ])


class TrackedJobs:
    """The PROCESSING job as a Python Celery task that tracks it in
    PostgreSQL would run it (the system this project replaces kept its jobs
    in a database too): on the schema our seeder made, from the message our
    seeder sent, the same rows our worker writes.

    Per job: a claim transaction (job RUNNING with its attempt, worker and
    lease, an audit event, the file PROCESSING), a read of the file and its
    transcript, five outputs rendered and written atomically, and a
    completion transaction (job COMPLETED, audit event, results upserted,
    file COMPLETED). psycopg 3, one connection per pool thread or process,
    statements prepared by the server after their first uses. Acked late."""

    LEASE_SECONDS = 300

    def __init__(self, url, out_dir, worker):
        self.url = url
        self.out_dir = out_dir
        self.worker = worker
        self.local = threading.local()

    def conn(self):
        conn = getattr(self.local, "conn", None)
        if conn is None or conn.closed:
            import psycopg

            conn = psycopg.connect(self.url)
            self.local.conn = conn
        return conn

    @staticmethod
    def now():
        return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")

    def run(self, audio_id, job_id):
        conn = self.conn()
        now = dt.datetime.now(dt.timezone.utc)
        at = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
        lease = (now + dt.timedelta(seconds=self.LEASE_SECONDS)).isoformat(
            timespec="microseconds").replace("+00:00", "Z")
        with conn.transaction():
            row = conn.execute(
                "UPDATE processing_jobs SET status = 'RUNNING', attempt = attempt + 1, worker = %s, "
                "started_at = coalesce(started_at, %s), heartbeat_at = %s, lease_expires_at = %s "
                "WHERE id = %s AND status = 'QUEUED' RETURNING attempt",
                (self.worker, at, at, lease, job_id)).fetchone()
            if row is None:
                return  # claimed or finished elsewhere: nothing to do twice
            attempt = row[0]
            conn.execute(
                "INSERT INTO job_events (job_id, at, from_status, to_status, attempt, worker, message) "
                "VALUES (%s, %s, 'QUEUED', 'RUNNING', %s, %s, %s)",
                (job_id, at, attempt, self.worker, f"claimed by {self.worker}"))
            conn.execute(
                "UPDATE audio_files SET status = 'PROCESSING', updated_at = %s "
                "WHERE id = %s AND status <> 'PROCESSING'", (at, audio_id))
        name, = conn.execute("SELECT original_name FROM audio_files WHERE id = %s", (audio_id,)).fetchone()
        body, = conn.execute("SELECT body FROM transcripts WHERE audio_id = %s", (audio_id,)).fetchone()
        conn.commit()  # the reads' implicit transaction
        transcript = json.loads(body)
        folder = os.path.join(self.out_dir, audio_id)
        os.makedirs(folder, exist_ok=True)
        stem = os.path.splitext(name)[0] or "transcript"
        outputs = {}
        for ext, text in render_transcript(transcript).items():
            path = os.path.join(folder, f"{stem}.{ext}")
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
            outputs[ext] = path
        segments = transcript.get("segments", [])
        words = sum(len(s["text"].split()) for s in segments)
        speech = sum(max(0.0, s["end"] - s["start"]) for s in segments)
        wpm = words * 60.0 / speech if speech > 0 else 0.0
        at = self.now()
        with conn.transaction():
            done = conn.execute(
                "UPDATE processing_jobs SET status = 'COMPLETED', progress = 100, completed_at = %s, "
                "lease_expires_at = NULL WHERE id = %s AND status = 'RUNNING' AND worker = %s "
                "AND attempt = %s", (at, job_id, self.worker, attempt)).rowcount
            if done != 1:
                raise RuntimeError(f"job {job_id} moved while it ran")
            conn.execute(
                "INSERT INTO job_events (job_id, at, from_status, to_status, attempt, worker, message) "
                "VALUES (%s, %s, 'RUNNING', 'COMPLETED', %s, %s, %s)",
                (job_id, at, attempt, self.worker, f"wrote {', '.join(outputs)} to {folder}"))
            conn.execute(
                "INSERT INTO audio_results (audio_id, outputs, words, speech_seconds, words_per_minute, "
                "created_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (audio_id) DO UPDATE SET "
                "outputs = excluded.outputs, words = excluded.words, "
                "speech_seconds = excluded.speech_seconds, "
                "words_per_minute = excluded.words_per_minute, created_at = excluded.created_at",
                (audio_id, json.dumps(outputs), words, speech, wpm, at))
            conn.execute(
                "UPDATE audio_files SET status = 'COMPLETED', updated_at = %s WHERE id = %s "
                "AND NOT EXISTS (SELECT 1 FROM processing_jobs p WHERE p.audio_id = %s "
                "AND p.status <> 'COMPLETED')", (at, audio_id, audio_id))


def render_transcript(t):
    """txt, srt, vtt, json and tsv of a stored transcript, as faster-whisper's
    and Whisper's writers lay them out."""

    def clock(seconds, sep):
        ms = int(round(seconds * 1000))
        h, ms = divmod(ms, 3_600_000)
        m, ms = divmod(ms, 60_000)
        s, ms = divmod(ms, 1000)
        return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"

    segs = t.get("segments", [])
    txt = "".join(s["text"].strip() + "\n" for s in segs)
    srt = "".join(f"{i}\n{clock(s['start'], ',')} --> {clock(s['end'], ',')}\n{s['text'].strip()}\n\n"
                  for i, s in enumerate(segs, 1))
    vtt = "WEBVTT\n\n" + "".join(
        f"{clock(s['start'], '.')} --> {clock(s['end'], '.')}\n{s['text'].strip()}\n\n" for s in segs)
    tsv = "start\tend\ttext\n" + "".join(
        f"{int(round(s['start'] * 1000))}\t{int(round(s['end'] * 1000))}\t{s['text'].strip()}\n"
        for s in segs)
    return {"txt": txt, "srt": srt, "vtt": vtt, "json": json.dumps(t, indent=2), "tsv": tsv}


# ---------------------------------------------------------------- helpers


def percentile(values, q):
    """Nearest rank, so p99 of 2,000 values is the 1,980th."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


def parse_ts(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def make_wav(path, seconds=2.0, rate=16000):
    import math

    frames = bytearray()
    for i in range(int(seconds * rate)):
        v = int(8000 * math.sin(2 * math.pi * 440 * i / rate))
        frames += v.to_bytes(2, "little", signed=True)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


def psql(base, sql):
    out = subprocess.run(
        ["psql", base, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True, capture_output=True, text=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def clean_env(extra):
    """The caller's PIPELINE_* settings would change what is measured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(extra)
    return env


class Proc:
    """A child process whose CPU time and peak memory are read when it is reaped."""

    def __init__(self, name, argv, log_path, **kwargs):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, **kwargs)
        self.rusage = None

    def alive(self):
        return self.p.poll() is None and self.rusage is None

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout=30):
        """SIGTERM (both workers hand back or finish what they run), then SIGKILL."""
        if self.rusage is not None:
            return
        if self.p.returncode is None:
            try:
                self.p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status, rusage = os.wait4(self.p.pid, os.WNOHANG)
            except ChildProcessError:
                self.rusage = False
                break
            if pid:
                self.rusage = rusage
                self.p.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                log(f"{self.name} ignored SIGTERM for {timeout} s; killing it")
                self.p.kill()
                deadline = time.monotonic() + 10
            time.sleep(0.05)
        self.log.close()

    def usage(self):
        if not self.rusage:
            return {}
        return {
            "worker_cpu_seconds": round(self.rusage.ru_utime + self.rusage.ru_stime, 3),
            "worker_peak_rss_mib": round(self.rusage.ru_maxrss / 1024, 1),
        }


def wait_until(predicate, timeout, what, proc=None, step=0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.log_text()[-4000:]}")
        if time.monotonic() > deadline:
            tail = f":\n{proc.log_text()[-4000:]}" if proc is not None else ""
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}{tail}")
        time.sleep(step)


class Broker:
    def __init__(self, kind, url):
        self.kind = kind
        self.url = url

    def consumers(self, queue):
        """Consumers on an AMQP queue (None for Redis, which cannot tell)."""
        if self.kind != "amqp":
            return None
        import amqp
        from kombu.utils.url import parse_url

        u = parse_url(self.url)
        conn = amqp.Connection(
            host=f"{u['hostname']}:{u['port'] or 5672}", userid=u["userid"],
            password=u["password"], virtual_host=u["virtual_host"] or "/",
        )
        conn.connect()
        try:
            ch = conn.channel()
            try:
                _, _, consumers = ch.queue_declare(queue, passive=True)
            except Exception:
                return 0
            return consumers
        finally:
            conn.close()

    def wait_consuming(self, queue, proc):
        """Until the worker listens: AMQP says so; on Redis a worker that has
        logged its start is in BRPOP within a poll, so wait a little longer."""
        if self.kind == "amqp":
            wait_until(lambda: (self.consumers(queue) or 0) >= 1, 60, f"a consumer on {queue}", proc, 0.2)
        time.sleep(1.0)

    def delete_queue(self, queue):
        try:
            if self.kind == "amqp":
                import amqp
                from kombu.utils.url import parse_url

                u = parse_url(self.url)
                conn = amqp.Connection(
                    host=f"{u['hostname']}:{u['port'] or 5672}", userid=u["userid"],
                    password=u["password"], virtual_host=u["virtual_host"] or "/",
                )
                conn.connect()
                conn.channel().queue_delete(queue)
                conn.close()
            else:
                import redis

                r = redis.Redis.from_url(self.url)
                sep = "\x06\x16"
                r.delete(queue, *(f"{queue}{sep}{step}" for step in (3, 6, 9)))
                # kombu's bindings of the exchange Celery names after the queue.
                r.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        except Exception as e:  # cleanup must not hide the results
            log(f"could not delete queue {queue}: {e}")


def summarize(starts, ends, enqueue_start, n_expected, per_message_latency=None):
    starts = [s for s in starts if s is not None]
    ends = [e for e in ends if e is not None]
    result = {"jobs": len(ends), "expected": n_expected}
    if not starts or not ends:
        return result
    first, last = min(starts), max(ends)
    latencies = [(s - enqueue_start) * 1000 for s in starts]
    result.update({
        "jobs_per_second": round(len(ends) / (last - first), 1) if last > first else None,
        "e2e_jobs_per_second": round(len(ends) / (last - enqueue_start), 1),
        "first_start_after_enqueue_ms": round((first - enqueue_start) * 1000, 1),
        "run_seconds": round(last - first, 3),
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 1),
            "p99": round(percentile(latencies, 99), 1),
            "max": round(max(latencies), 1),
            "mean": round(sum(latencies) / len(latencies), 1),
        },
    })
    if per_message_latency:
        result["per_message_latency_ms"] = {
            "p50": round(percentile(per_message_latency, 50), 1),
            "p99": round(percentile(per_message_latency, 99), 1),
        }
    return result


# ---------------------------------------------------------------- our worker


def analyse_ours(postgres, schema, n, dispatch_start):
    """Start (first RUNNING) and end (COMPLETED) of each PROCESSING job, from
    the audit trail, which the worker writes in the transaction of each
    transition."""
    statuses = {status: int(count) for status, count in psql(
        postgres, f"SELECT status, count(*) FROM {schema}.processing_jobs "
        "WHERE job_type = 'PROCESSING' GROUP BY status")}
    events = psql(postgres,
                  "SELECT e.job_id, coalesce(e.from_status, ''), e.to_status, e.at "
                  f"FROM {schema}.job_events e JOIN {schema}.processing_jobs j ON j.id = e.job_id "
                  "WHERE j.job_type = 'PROCESSING' ORDER BY e.id")
    started, completed, runs, notes = {}, {}, 0, 0
    for job_id, from_status, to_status, at in events:
        if from_status == to_status:
            notes += 1  # duplicate deliveries and other notes that change nothing
        elif to_status == "RUNNING":
            runs += 1
            started.setdefault(job_id, parse_ts(at))
        elif to_status == "COMPLETED":
            completed[job_id] = parse_ts(at)
    results = int(psql(postgres, f"SELECT count(*) FROM {schema}.audio_results")[0][0])
    summary = summarize(list(started.values()), list(completed.values()), dispatch_start, n)
    summary.update({"statuses": statuses, "runs": runs, "audit_notes": notes, "results_rows": results})
    if statuses.get("COMPLETED", 0) != n or results != n:
        summary["problem"] = f"not every job completed: {statuses}, {results} result rows"
    elif runs != n:
        summary["problem"] = f"{runs} RUNNING transitions for {n} jobs (some ran more than once)"
    return summary


def run_ours(args, broker, workdir, audio, side="ours"):
    """Seeds and dispatches N PROCESSING jobs, then runs them with our worker
    or, for side `tracked`, with a Celery worker whose task does the same
    tracked job in Python (`TrackedJobs`)."""
    schema = "bench_" + uuid.uuid4().hex[:12]
    queue = f"bench-{side}-" + uuid.uuid4().hex[:8]
    psql(args.postgres, f"CREATE SCHEMA {schema}")
    db_url = f"{args.postgres}?options=-c%20search_path%3D{schema}"
    data = os.path.join(workdir, f"data-{queue}")
    os.makedirs(data, exist_ok=True)
    env = clean_env({
        "PIPELINE_DATABASE_URL": db_url,
        "PIPELINE_BROKER_URL": broker.url,
        "PIPELINE_BROKER_QUEUE": queue,
        "PIPELINE_DATA_DIR": data,
        "PIPELINE_BROKER_PREFETCH_MULTIPLIER": str(args.prefetch_multiplier),
        "NO_COLOR": "1",
    })
    seeder = worker = None
    try:
        log(f"ours/{broker.kind}: seeding {args.n} jobs in schema {schema}")
        seed_log = open(os.path.join(workdir, f"seed-{queue}.log"), "ab")
        seeder = subprocess.Popen(
            [args.seeder, db_url, broker.url, queue, str(args.n), audio, "--go-on-stdin"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=seed_log, text=True,
            env=env, cwd=workdir,
        )

        def seeder_line():
            line = seeder.stdout.readline()
            if not line:
                seeder.wait()
                with open(seed_log.name, "rb") as f:
                    tail = f.read().decode("utf-8", "replace")[-4000:]
                raise RuntimeError(f"seed_process_jobs exited with {seeder.returncode}:\n{tail}")
            return json.loads(line)

        ready = seeder_line()
        log(f"ours/{broker.kind}: seeded in {ready['seed_seconds']:.1f} s")

        def start_worker():
            if side == "tracked":
                w = start_celery_worker(
                    args, broker, workdir, queue, f"tracked-{queue}", "tracked jobs",
                    ["--acks-late", "--work", "tracked", "--postgres", db_url,
                     "--work-dir", os.path.join(data, "outputs")])
            else:
                w = Proc(
                    f"pipeline-manager worker ({broker.kind})",
                    [args.bin, "worker", "--concurrency", str(args.concurrency)],
                    os.path.join(workdir, f"ours-worker-{queue}.log"), env=env, cwd=workdir,
                )
                wait_until(lambda: " started: " in w.log_text(), 60, "the worker to start", w)
            broker.wait_consuming(queue, w)
            return w

        def enqueue():
            seeder.stdin.write("go\n")
            seeder.stdin.flush()
            return seeder_line()

        if args.order == "idle":
            worker = start_worker()
            sent = enqueue()
        else:
            sent = enqueue()
            worker = start_worker()
        log(f"ours/{broker.kind}: dispatched {sent['dispatched']} in {sent['seconds']:.2f} s")

        def finished():
            rows = psql(args.postgres, f"SELECT count(*) FROM {schema}.processing_jobs "
                        "WHERE job_type = 'PROCESSING' AND status IN ('COMPLETED', 'FAILED', 'CANCELLED')")
            return int(rows[0][0]) >= args.n

        wait_until(finished, args.timeout, f"{args.n} PROCESSING jobs to finish", worker, 0.5)
        worker.stop()
        summary = analyse_ours(args.postgres, schema, args.n, sent["dispatch_started_unix"])
        summary.update({
            "enqueue_seconds": round(sent["seconds"], 3),
            "seed_seconds": round(ready["seed_seconds"], 1),
            **worker.usage(),
        })
        return summary
    finally:
        if seeder is not None and seeder.poll() is None:
            seeder.kill()
            seeder.wait()
        if worker is not None:
            worker.stop()
        broker.delete_queue(queue)
        if not args.keep:
            psql(args.postgres, f"DROP SCHEMA {schema} CASCADE")
        else:
            log(f"kept schema {schema}")


# ---------------------------------------------------------------- the Celery side


def start_celery_worker(args, broker, workdir, queue, name, what, work):
    """A `celery-worker` of this script on `queue`, once it is ready; its
    files are `<name>.jsonl` (one line per task), `.ready` and `.log`."""
    ready_file = os.path.join(workdir, f"{name}.ready")
    argv = [sys.executable, os.path.abspath(__file__), "celery-worker",
            "--broker", broker.url, "--queue", queue,
            "--concurrency", str(args.concurrency), "--pool", args.celery_pool,
            "--prefetch-multiplier", str(args.prefetch_multiplier),
            "--out", os.path.join(workdir, f"{name}.jsonl"), "--ready", ready_file, *work]
    w = Proc(f"celery worker, {what} ({broker.kind})", argv,
             os.path.join(workdir, f"{name}.log"), cwd=workdir)
    wait_until(lambda: os.path.exists(ready_file), 60, "the Celery worker to be ready", w)
    return w



def run_celery(args, broker, workdir):
    from celery import Celery

    queue = "bench-celery-" + uuid.uuid4().hex[:8]
    # Names of their own: with --runs, a file from the round before would
    # count as this worker's output or readiness.
    tag = f"{broker.kind}-{uuid.uuid4().hex[:8]}"
    out = os.path.join(workdir, f"celery-{tag}.jsonl")
    worker = None
    try:
        def start_worker():
            work = ["--work", args.celery_work, "--work-dir", os.path.join(workdir, f"celery-out-{tag}")]
            if args.celery_acks_late:
                work.append("--acks-late")
            w = start_celery_worker(args, broker, workdir, queue, f"celery-{tag}", "no-op task", work)
            broker.wait_consuming(queue, w)
            return w

        app = Celery("bench-producer", broker=broker.url)
        app.conf.update(task_serializer="json", accept_content=["json"],
                        broker_connection_retry_on_startup=True)

        def enqueue():
            ids = [str(uuid.uuid4()) for _ in range(args.n)]
            with app.producer_or_acquire() as producer:
                # Connected before the clock starts, as our seeder is.
                producer.connection.ensure_connection()
                begin = time.time()
                for task_id in ids:
                    app.send_task(TASK, task_id=task_id, queue=queue, producer=producer, kwargs={
                        "audio_id": str(uuid.uuid4()), "job_id": task_id, "enqueued_at": time.time(),
                    })
                seconds = time.time() - begin
            return begin, seconds

        if args.order == "idle":
            worker = start_worker()
            begin, seconds = enqueue()
        else:
            begin, seconds = enqueue()
            worker = start_worker()
        log(f"celery/{broker.kind}: sent {args.n} in {seconds:.2f} s")

        def lines():
            try:
                with open(out) as f:
                    return sum(1 for _ in f)
            except FileNotFoundError:
                return 0

        wait_until(lambda: lines() >= args.n, args.timeout, f"{args.n} Celery tasks", worker, 0.5)
        worker.stop()
        records = {}
        with open(out) as f:
            for line in f:
                r = json.loads(line)
                records.setdefault(r["id"], r)  # a redelivery would run twice; keep the first
        recs = list(records.values())
        summary = summarize([r["start"] for r in recs], [r["end"] for r in recs], begin, args.n,
                            [(r["start"] - r["enq"]) * 1000 for r in recs if r.get("enq")])
        summary.update({
            "enqueue_seconds": round(seconds, 3),
            "task_runs": lines(),
            **worker.usage(),
        })
        if len(records) != args.n:
            summary["problem"] = f"{len(records)} distinct tasks ran, expected {args.n}"
        return summary
    finally:
        if worker is not None:
            worker.stop()
        broker.delete_queue(queue)


# ---------------------------------------------------------------- the run


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def report(results, args):
    lines = [
        f"{args.n} short jobs, concurrency {args.concurrency}, prefetch multiplier "
        f"{args.prefetch_multiplier}, order {args.order}, Celery task work: {args.celery_work}, "
        f"pool: {args.celery_pool}, median of {args.runs} run(s)",
        "",
        "| broker | worker | jobs/s | each run | e2e jobs/s | latency p50 ms | latency p99 ms | enqueue s | worker CPU s | load before |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, sides in results.items():
        for side, r in sides.items():
            if "error" in r:
                lines.append(f"| {kind} | {side} | error: {r['error'].splitlines()[0]} |||||||||")
                continue
            lat = r.get("latency_ms", {})
            lines.append(
                f"| {kind} | {side} | {fmt(r.get('jobs_per_second'))} "
                f"| {' / '.join(fmt(v, 0) for v in r.get('runs_jobs_per_second', []))} "
                f"| {fmt(r.get('e2e_jobs_per_second'))} "
                f"| {fmt(lat.get('p50'), 0)} | {fmt(lat.get('p99'), 0)} | {fmt(r.get('enqueue_seconds'), 2)} "
                f"| {fmt(r.get('worker_cpu_seconds'), 2)} | {fmt(r.get('load_average_before'), 2)} |"
            )
    lines.append("")
    for kind, sides in results.items():
        ours = sides.get("ours", {})
        for peer in ("celery", "tracked"):
            ratio = ratios(ours, sides.get(peer, {}))
            if not ratio:
                continue
            sides[f"ratio_ours_over_{peer}"] = ratio
            lines.append(
                f"{kind}: ours/{peer} jobs/s {fmt(ratio.get('jobs_per_second'), 2)}x, "
                f"latency p50 {fmt(ratio.get('latency_p50'), 2)}x, p99 {fmt(ratio.get('latency_p99'), 2)}x "
                "(jobs/s above 1 and latency below 1 favour ours)"
            )
        for side, r in list(sides.items()):
            if isinstance(r, dict) and r.get("problem"):
                lines.append(f"{kind}/{side}: PROBLEM: {r['problem']}")
    return "\n".join(lines)


def median_run(rs):
    """The run with the median rate, carrying every run's rate; a failed run
    wins, so that its error is reported."""
    for r in rs:
        if "error" in r or r.get("problem"):
            return r
    ordered = sorted(rs, key=lambda r: r.get("jobs_per_second") or 0)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs_jobs_per_second"] = [r.get("jobs_per_second") for r in rs]
    return chosen


def ratios(ours, celery):
    def div(a, b):
        return round(a / b, 3) if a is not None and b else None

    if "jobs_per_second" not in ours or "jobs_per_second" not in celery:
        return None
    return {
        "jobs_per_second": div(ours.get("jobs_per_second"), celery.get("jobs_per_second")),
        "e2e_jobs_per_second": div(ours.get("e2e_jobs_per_second"), celery.get("e2e_jobs_per_second")),
        "latency_p50": div(ours["latency_ms"]["p50"], celery["latency_ms"]["p50"]),
        "latency_p99": div(ours["latency_ms"]["p99"], celery["latency_ms"]["p99"]),
    }


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except Exception:
        return None


def run(argv):
    p = argparse.ArgumentParser(prog="bench_queue.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--brokers", default="redis,amqp")
    p.add_argument("--sides", default="ours,celery")
    p.add_argument("--order", choices=["idle", "backlog"], default="idle")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/5",
                   help="a Redis database the tests do not use (default %(default)s)")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    p.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/test")
    p.add_argument("--bin", default=os.path.join(TARGET, "release", "pipeline-manager"))
    p.add_argument("--seeder", default=os.path.join(TARGET, "release", "examples", "seed_process_jobs"))
    p.add_argument("--audio", help="a small audio file for the seeded rows (default: a generated 2 s WAV)")
    p.add_argument("--celery-work", choices=["none", "files"], default="none",
                   help="what the Celery task does besides recording: nothing, or write five small files")
    p.add_argument("--runs", type=int, default=1,
                   help="rounds of every side; each figure is the median round's (default %(default)s)")
    p.add_argument("--prefetch-multiplier", type=int, default=4,
                   help="messages each worker slot holds, on every side (Celery's "
                        "worker_prefetch_multiplier, our broker.prefetch_multiplier; default %(default)s)")
    p.add_argument("--celery-pool", choices=["threads", "prefork"], default="threads",
                   help="the Celery workers' pool (default %(default)s)")
    p.add_argument("--celery-acks-late", action="store_true",
                   help="acknowledge after the task, as our worker does (Celery's default is before)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per side to finish all jobs")
    p.add_argument("--out", help="result JSON (default: ~/.cache/pipeline-manager/bench-queue-<time>.json)")
    p.add_argument("--work-root", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                   help="where the outputs are written (default %(default)s): on a disk, "
                        "creating 20,000 files a run makes ext4's inode allocation the largest "
                        "cost of every side, and it grows from run to run")
    p.add_argument("--keep", action="store_true", help="keep the PostgreSQL schemas and the work folder")
    args = p.parse_args(argv)
    sides = [s for s in args.sides.split(",") if s]
    kinds = [b for b in args.brokers.split(",") if b]
    if "ours" in sides or "tracked" in sides:
        for path in (args.bin, args.seeder):
            if not os.access(path, os.X_OK):
                sys.exit(f"bench-queue: {path} is missing; build it with "
                         "`cargo build --release -p pipeline-cli --bins --examples` (or run scripts/bench-queue.sh)")
    urls = {"redis": args.redis_url, "amqp": args.amqp_url}
    workdir = tempfile.mkdtemp(prefix="bench-queue-", dir=args.work_root)
    audio = args.audio or os.path.join(workdir, "tone.wav")
    if not args.audio:
        make_wav(audio)
    runs = {kind: {side: [] for side in sides} for kind in kinds}
    try:
        # Sides alternate within each round, so that drift on the machine
        # (checkpoints, other work) falls on all of them alike.
        for round_no in range(args.runs):
            for kind in kinds:
                broker = Broker(kind, urls[kind])
                for side in sides:
                    # Another build or test run on the machine skews the numbers; say so.
                    load = os.getloadavg()[0]
                    try:
                        if side in ("ours", "tracked"):
                            r = run_ours(args, broker, workdir, audio, side)
                        else:
                            r = run_celery(args, broker, workdir)
                    except Exception as e:
                        log(f"{side}/{kind} failed: {e}")
                        r = {"error": str(e)}
                    r["load_average_before"] = round(load, 2)
                    runs[kind][side].append(r)
                    log(f"round {round_no + 1}/{args.runs} {kind}/{side}: "
                        f"{r.get('jobs_per_second', r.get('error'))} jobs/s")
        results = {kind: {side: median_run(rs) for side, rs in by_side.items()}
                   for kind, by_side in runs.items()}
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    import celery
    import kombu

    document = {
        "benchmark": "queue: short jobs, ours vs Celery 5",
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "n": args.n,
        "concurrency": args.concurrency,
        "order": args.order,
        "celery_work": args.celery_work,
        "celery_acks_late": args.celery_acks_late,
        "celery_pool": args.celery_pool,
        "prefetch_multiplier": args.prefetch_multiplier,
        "runs": args.runs,
        "work_root": args.work_root or tempfile.gettempdir(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": {"python": platform.python_version(), "celery": celery.__version__,
                     "kombu": kombu.__version__, "git": git_rev()},
        "brokers": {k: urls[k].replace("guest:guest@", "guest:***@") for k in kinds},
        "results": results,
    }
    text = report(results, args)
    out = args.out or os.path.join(
        os.path.expanduser("~"), ".cache", "pipeline-manager",
        f"bench-queue-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(document, f, indent=2)
    print(text)
    print(f"\nresults: {out}")
    failed = any("error" in r or r.get("problem") for sides in results.values()
                 for r in sides.values() if isinstance(r, dict) and ("error" in r or "problem" in r))
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "celery-worker":
        celery_worker(sys.argv[2:])
    else:
        rest = sys.argv[1:]
        if rest and rest[0] == "run":
            rest = rest[1:]
        sys.exit(run(rest))
