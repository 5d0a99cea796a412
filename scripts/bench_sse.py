"""SSE fan-out benchmark: N clients hold GET /api/v1/events open while the
script uploads files (each upload writes two job events); for every event
and client it records the delay from the event's time (`at`, written by the
server) to its arrival. Prints one JSON document.

usage: bench_sse.py BASE_URL KEY AUDIO_FILE [--clients 500] [--uploads 40]
"""

import argparse
import asyncio
import json
import statistics
import time
import urllib.request
import uuid
from datetime import datetime


async def client(host, port, key, received, ready):
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(
        f"GET /api/v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    ready.release()
    kind = None
    while True:
        line = await reader.readline()
        if not line:
            return
        line = line.rstrip(b"\r\n")
        # Chunked encoding: size lines are hex digits alone; skip them.
        if line.startswith(b"event:"):
            kind = line[6:].strip()
        elif line.startswith(b"data:") and kind == b"job":
            data = json.loads(line[5:])
            at = datetime.fromisoformat(data["at"].replace("Z", "+00:00")).timestamp()
            received.append(time.time() - at)


def upload(base, key, path):
    boundary = uuid.uuid4().hex
    content = open(path, "rb").read()
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n".encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{base}/api/v1/audio?x={uuid.uuid4().hex}",
        data=body,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
        method="POST",
    )
    urllib.request.urlopen(request).read()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("key")
    parser.add_argument("audio")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--uploads", type=int, default=40)
    args = parser.parse_args()
    host, port = args.base.split("//")[1].split(":")
    received = []
    ready = asyncio.Semaphore(0)
    tasks = [
        asyncio.create_task(client(host, int(port), args.key, received, ready))
        for _ in range(args.clients)
    ]
    for _ in range(args.clients):
        await ready.acquire()
    loop = asyncio.get_running_loop()
    started = time.time()
    for _ in range(args.uploads):
        await loop.run_in_executor(None, upload, args.base, args.key, args.audio)
        await asyncio.sleep(0.1)
    expected = args.clients * args.uploads * 2
    deadline = time.time() + 30
    while len(received) < expected and time.time() < deadline:
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    delays = sorted(received)
    q = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))] * 1000 if delays else None
    print(json.dumps({
        "clients": args.clients,
        "events": args.uploads * 2,
        "deliveries_expected": expected,
        "deliveries_received": len(delays),
        "seconds": round(time.time() - started, 1),
        "delay_ms_p50": q(0.5),
        "delay_ms_p99": q(0.99),
        "delay_ms_mean": statistics.mean(delays) * 1000 if delays else None,
    }))


asyncio.run(main())
