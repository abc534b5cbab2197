"""A lean HTTP/1.1 keep-alive load generator for the gateway benchmark.

Why not httpx: the load generator shares the 2 cores with the servers it measures, so every
millisecond of CPU it spends per request is taken from them. httpx's async client costs about
1 ms of CPU per request here; this client writes a pre-built request and reads one
``Content-Length`` response per round trip on a persistent connection, a few tens of microseconds.
It speaks only what the benchmark needs (GET, keep-alive, ``Content-Length`` bodies) and fails
loudly on anything else rather than mis-measuring.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    """Latencies (ms) in completion order, wall seconds and the count per HTTP status."""

    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)


class ProtocolError(RuntimeError):
    """The server answered something this client does not parse (chunked body, closed socket)."""


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ProtocolError(f"response without Content-Length (status {status})")
    await reader.readexactly(length)
    return status


async def run_load(
    url: str | list[str],
    headers: dict[str, str],
    concurrency: int,
    *,
    total: int | None = None,
    seconds: float | None = None,
) -> LoadResult:
    """GETs from ``concurrency`` connections, each sending its next request at once.

    ``url`` may be a list (same host and port): requests then cycle through it in order. Stops after
    ``total`` requests or once ``seconds`` have passed (requests in flight complete), whichever
    comes first.
    """
    if total is None and seconds is None:
        raise ValueError("give total, seconds or both")
    urls = [url] if isinstance(url, str) else url
    parts = urlsplit(urls[0])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [_request(u, host, port, headers) for u in urls]
    sent = 0
    result = LoadResult()
    remaining = total if total is not None else float("inf")
    deadline = time.perf_counter() + seconds if seconds is not None else float("inf")

    async def worker() -> None:
        nonlocal remaining, sent
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0 and (started := time.perf_counter()) < deadline:
                remaining -= 1
                request, sent = requests[sent % len(requests)], sent + 1
                writer.write(request)
                status = await _read_response(reader)
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result


def _request(url: str, host: str, port: int, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    if (parts.hostname or "127.0.0.1", parts.port or 80) != (host, port):
        raise ValueError(f"every URL must name {host}:{port}: {url}")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
