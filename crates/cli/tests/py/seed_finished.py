"""Seeds a pipeline-manager SQLite database with finished files, fast.

usage: seed_finished.py DB_PATH COUNT

COUNT files, each with a COMPLETED TRANSCRIPTION and PROCESSING job (one
to three seconds long), in one transaction: the load of a server that has
been in use for a while. Columns the schema adds later are filled from
its own defaults; a NOT NULL column without one gets 0 or ''.
"""

import sqlite3
import sys
import uuid
from datetime import datetime, timedelta, timezone


def rows_for(conn, table, given):
    """`given` completed with a value for every other NOT NULL column."""
    row = dict(given)
    for _, name, kind, notnull, default, _ in conn.execute(f"PRAGMA table_info({table})"):
        if name in row or not notnull or default is not None:
            continue
        row[name] = 0 if any(k in kind.upper() for k in ("INT", "REAL", "DOUBLE")) else ""
    return row


def insert(conn, table, rows):
    columns = list(rows[0])
    conn.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [[r[c] for c in columns] for r in rows],
    )


def main():
    db, count = sys.argv[1], int(sys.argv[2])
    conn = sqlite3.connect(db)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    stamp = lambda t: t.isoformat().replace("+00:00", "Z")
    files, jobs = [], []
    for i in range(count):
        audio = str(uuid.uuid4())
        created = start + timedelta(seconds=10 * i)
        files.append(rows_for(conn, "audio_files", {
            "id": audio, "original_name": f"talk-{i:05}.wav", "sha256": uuid.uuid4().hex * 2,
            "size_bytes": 352_000, "container": "wav", "codec": "pcm_s16le",
            "duration_seconds": 11.0, "sample_rate": 16000, "channels": 1,
            "storage_key": f"audio/{audio}", "status": "COMPLETED", "options": "{}",
            "settings_key": "seed", "created_at": stamp(created), "updated_at": stamp(created),
        }))
        for k, job_type in enumerate(("TRANSCRIPTION", "PROCESSING")):
            began = created + timedelta(seconds=4 * k)
            jobs.append(rows_for(conn, "processing_jobs", {
                "id": str(uuid.uuid4()), "audio_id": audio, "job_type": job_type,
                "status": "COMPLETED", "progress": 1.0, "task_id": str(uuid.uuid4()),
                "attempt": 1, "max_attempts": 3, "available_at": stamp(created),
                "created_at": stamp(created), "started_at": stamp(began),
                "completed_at": stamp(began + timedelta(seconds=1 + i % 3)),
            }))
    with conn:
        insert(conn, "audio_files", files)
        insert(conn, "processing_jobs", jobs)
    print(count)


if __name__ == "__main__":
    main()
