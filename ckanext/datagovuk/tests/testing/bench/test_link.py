"""The rate-limited link: the proxy keeps every byte and paces each
direction; the token bucket behind it."""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import pytest

from ckanext.datagovuk.testing.bench.link import ThrottledProxy, TokenBucket


def _sink_server(payload_back: bytes):
    """A TCP server that reads everything the client sends (returning its
    sha256), then sends ``payload_back`` and closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    received = {}

    def serve():
        conn, _ = server.accept()
        digest, size = hashlib.sha256(), 0
        while True:
            data = conn.recv(65536)
            if not data:
                break
            digest.update(data)
            size += len(data)
        received["sha256"], received["size"] = digest.hexdigest(), size
        conn.sendall(payload_back)
        conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], received, thread


def test_throttled_proxy_limits_each_direction_and_keeps_the_bytes():
    rate = 4_000_000
    upload = os.urandom(2_000_000)
    download = os.urandom(2_000_000)
    port, received, thread = _sink_server(download)
    with ThrottledProxy(port, rate=rate, lifetime=60) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        started = time.monotonic()
        client.sendall(upload)
        client.shutdown(socket.SHUT_WR)
        got = bytearray()
        upload_done = None
        while True:
            data = client.recv(65536)
            if upload_done is None:
                upload_done = time.monotonic()
            if not data:
                break
            got.extend(data)
        finished = time.monotonic()
        client.close()
    thread.join(5)
    assert received["size"] == len(upload)
    assert received["sha256"] == hashlib.sha256(upload).hexdigest()
    assert bytes(got) == download
    # Upload then download, each 2 MB at 4 MB/s: about 1 s in all.  A loaded
    # machine can only make it slower; an unthrottled proxy takes ~0.01 s.
    seconds = finished - started
    expected = (len(upload) + len(download)) / rate
    assert seconds >= expected * 0.85, seconds
    assert seconds <= expected * 3, seconds


def test_token_bucket_paces_at_the_rate_after_the_burst():
    bucket = TokenBucket(rate=1000, burst=100)
    assert bucket.delay_for(100, now=10.0) == 0.0
    # The next 1000 bytes need a whole second of link time.
    assert bucket.delay_for(1000, now=10.0) == pytest.approx(1.0)
