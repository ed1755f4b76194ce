"""``python -m ckanext.datagovuk.testing.oldsite``: parses the options,
generates the site (and its dump) and prints what it holds."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

from ckanext.datagovuk import db
from ckanext.datagovuk.errors import OperatorError

from .dump import write_dump
from .known import LEGACY_VERSION
from .populate import generate


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ckanext.datagovuk.testing.oldsite",
        description="Build an old data.gov.uk (CKAN 2.2) site in the empty "
                    "database URL.")
    parser.add_argument("url", metavar="URL",
                        help="postgresql:// URL of an empty database")
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--legacy-version", type=int, default=LEGACY_VERSION,
                        metavar="V",
                        help="CKAN's sqlalchemy-migrate version of the site "
                             f"(default {LEGACY_VERSION}, CKAN 2.2)")
    parser.add_argument("--no-harvest", action="store_true",
                        help="leave out the old harvest tables")
    parser.add_argument("--dump", metavar="PATH",
                        help="also write a custom-format dump to PATH")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        counts = generate(args.url, datasets=args.datasets, seed=args.seed,
                          harvest=not args.no_harvest, progress=progress,
                          version=args.legacy_version)
        if args.dump:
            started = time.monotonic()
            write_dump(args.url, args.dump)
            progress(f"dump: {args.dump} ({time.monotonic() - started:.1f}s)")
    except OperatorError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    print(f"{db.safe_url(args.url)}: {counts.get('package', 0)} datasets, "
          f"{counts.get('group', 0)} publishers, {counts.get('user', 0)} "
          f"users, {sum(counts.values())} rows")
    return 0
