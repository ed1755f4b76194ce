"""What a dump is, told by its first bytes, and the filter a plain SQL dump
streams through on its way into ``psql``."""
from __future__ import annotations

import re
from typing import Callable

from ckanext.datagovuk.errors import OperatorError

CUSTOM_MAGIC = b"PGDMP"
PLAIN_MARKER = b"PostgreSQL database dump"

_COPY_START = re.compile(rb"^COPY .* FROM stdin;\s*$")
_DROPPED_STATEMENT = re.compile(
    rb"^(ALTER [A-Z ]+ .* OWNER TO .*;"
    rb"|GRANT .*;"
    rb"|REVOKE .*;"
    rb"|SET SESSION AUTHORIZATION .*;"
    rb"|RESET SESSION AUTHORIZATION;"
    rb"|ALTER DEFAULT PRIVILEGES .*;"
    rb"|COMMENT ON EXTENSION .*;)\s*$")
_CREATE_EXTENSION = re.compile(
    rb'^CREATE EXTENSION (?:IF NOT EXISTS )?"?([A-Za-z0-9_\-]+)"?')
_CONNECT = re.compile(rb"^\\(?:connect|c)\b")


class PlainDumpFilter:
    """Drops owner and privilege statements from a plain pg_dump stream,
    line by line outside COPY data, and reports the extensions it needs."""

    def __init__(self, on_extension: Callable[[str], None]):
        self.on_extension = on_extension
        self.pending = b""
        self.in_copy = False
        self.dropped = 0

    def feed(self, chunk: bytes) -> bytes:
        data = self.pending + chunk
        cut = data.rfind(b"\n") + 1
        self.pending = data[cut:]
        return self._filter(data[:cut])

    def finish(self) -> bytes:
        rest, self.pending = self.pending, b""
        return self._filter(rest)

    def _filter(self, data: bytes) -> bytes:
        if not data:
            return b""
        out = []
        for line in data.splitlines(keepends=True):
            if self.in_copy:
                if line.rstrip(b"\r\n") == b"\\.":
                    self.in_copy = False
                out.append(line)
                continue
            if _COPY_START.match(line):
                self.in_copy = True
            elif _DROPPED_STATEMENT.match(line):
                self.dropped += 1
                continue
            elif _CONNECT.match(line):
                raise OperatorError(
                    "the plain dump switches database (\\connect: made with "
                    "pg_dump -C or pg_dumpall); dump the one database with "
                    "pg_dump -Fc instead")
            else:
                match = _CREATE_EXTENSION.match(line)
                if match:
                    self.on_extension(match.group(1).decode())
            out.append(line)
        return b"".join(out)


def detect_format(head: bytes) -> str:
    """``custom`` or ``plain`` from the first bytes of a dump; otherwise an
    OperatorError saying what it is."""
    if head.startswith(CUSTOM_MAGIC):
        return "custom"
    if not head:
        raise OperatorError("the dump is empty")
    if head.startswith(b"\x1f\x8b"):
        raise OperatorError("the dump is gzip-compressed: decompress it "
                            "first (gunzip), or dump with pg_dump -Fc")
    if len(head) > 262 and head[257:262] == b"ustar":
        raise OperatorError("the dump is a tar-format archive: not "
                            "supported; dump with pg_dump -Fc")
    if b"\x00" not in head[:65536] and PLAIN_MARKER in head[:65536]:
        return "plain"
    raise OperatorError("not a PostgreSQL dump (neither custom format, "
                        "which starts with PGDMP, nor plain SQL from pg_dump)")
