"""The filter a plain SQL dump streams through."""
from __future__ import annotations

import pytest

from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.transfer import plain


def test_plain_filter_keeps_copy_data_that_looks_like_privileges():
    seen = []
    dump_filter = plain.PlainDumpFilter(seen.append)
    dump = (b"CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;\n"
            b"COMMENT ON EXTENSION hstore IS 'x';\n"
            b"CREATE TABLE public.note (t text);\n"
            b"ALTER TABLE public.note OWNER TO co;\n"
            b"COPY public.note (t) FROM stdin;\n"
            b"GRANT ALL ON TABLE public.note TO co;\n"
            b"\\.\n"
            b"REVOKE ALL ON SCHEMA public FROM PUBLIC;\n"
            b"GRANT SELECT ON TABLE public.note TO reader;\n")
    # Fed in small pieces, as a stream arrives.
    out = b"".join(dump_filter.feed(dump[i:i + 7])
                  for i in range(0, len(dump), 7))
    out += dump_filter.finish()
    assert seen == ["hstore"]
    assert dump_filter.dropped == 4
    assert out == (b"CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;\n"
                   b"CREATE TABLE public.note (t text);\n"
                   b"COPY public.note (t) FROM stdin;\n"
                   b"GRANT ALL ON TABLE public.note TO co;\n"
                   b"\\.\n")
    with pytest.raises(OperatorError, match="switches database"):
        plain.PlainDumpFilter(seen.append).feed(b"\\connect ckan\n")
