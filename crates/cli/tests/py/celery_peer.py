"""Python Celery 5 as the interop peer of the Rust worker, for the tests.

    celery_peer.py send-ingest BROKER QUEUE SOURCE   prints the task id
    celery_peer.py result BACKEND TASK_ID TIMEOUT    prints {"state", "result"}
    celery_peer.py worker BROKER QUEUE OUT_FILE      a Celery worker that records
                                                     every pipeline.* task it gets
    celery_peer.py bench-worker BROKER QUEUE CONCURRENCY
                                                     a worker whose pipeline.process
                                                     task does nothing (benchmark peer)

Everything is plain `celery` from PyPI: what an existing Python codebase
would do, with no knowledge of the Rust side.
"""

import json
import sys
import time

from celery import Celery


def app_for(broker, backend=None):
    app = Celery("peer", broker=broker, backend=backend)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def send_ingest(broker, queue, source, extra="{}"):
    app = app_for(broker)
    kwargs = {"source": source, **json.loads(extra)}
    result = app.send_task("pipeline.ingest", kwargs=kwargs, queue=queue)
    print(result.id, flush=True)


def result(backend, task_id, timeout):
    app = app_for("memory://", backend)
    deadline = time.monotonic() + float(timeout)
    res = app.AsyncResult(task_id)
    seen = []
    while True:
        state = res.state
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in ("SUCCESS", "FAILURE", "REVOKED") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    value = res.result
    if isinstance(value, BaseException):
        value = {"exception": type(value).__name__, "message": str(value)}
    print(json.dumps({"state": state, "result": value, "seen": seen}), flush=True)


def worker(broker, queue, out_file):
    app = app_for(broker)

    def record(name):
        @app.task(name=name, bind=True)
        def task(self, *args, **kwargs):
            with open(out_file, "a") as f:
                f.write(json.dumps({
                    "task": name,
                    "id": self.request.id,
                    "args": list(args),
                    "kwargs": kwargs,
                }) + "\n")
        return task

    record("pipeline.transcribe")
    record("pipeline.process")
    app.worker_main([
        "worker", "--queues", queue, "--concurrency", "1", "--pool", "solo",
        "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
        "--without-heartbeat",
    ])


def bench_worker(broker, queue, concurrency):
    app = app_for(broker)

    @app.task(name="pipeline.process")
    def process(**kwargs):
        return None

    app.worker_main([
        "worker", "--queues", queue, "--concurrency", str(concurrency),
        "--pool", "threads", "--loglevel", "WARNING", "--without-gossip",
        "--without-mingle", "--without-heartbeat",
    ])


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    {
        "send-ingest": send_ingest,
        "result": result,
        "worker": worker,
        "bench-worker": bench_worker,
    }[command](*rest)
