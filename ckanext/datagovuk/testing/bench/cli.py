"""``python -m ckanext.datagovuk.testing.bench``: parses the options, runs
the benchmark and prints its table."""
from __future__ import annotations

import argparse
import os
import signal
import sys

from ckanext.datagovuk import transfer

from .report import format_text, write_results
from .run import Bench
from .steps import STAGE_NAMES, parse_stages, say

DEFAULT_DATASETS = 50000
DEFAULT_COMPARE_DATASETS = 5000
DEFAULT_SEED = 1
# Three rounds of the loopback steps in a ratio: a median that one
# disturbed copy cannot move.
DEFAULT_ROUNDS = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ckanext.datagovuk.testing.bench",
        description="Benchmark the move of an old data.gov.uk CKAN site "
                    "(run it with `make bench`).")
    parser.add_argument("--datasets", type=int, default=DEFAULT_DATASETS,
                        help="scale N of the old site (default %(default)s)")
    parser.add_argument("--compare-datasets", type=int,
                        default=DEFAULT_COMPARE_DATASETS,
                        help="the smaller scale M for linearity and memory growth "
                             "(default %(default)s; 0 skips it)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--output", default="bench-results",
                        help="folder for results.json, results.txt and logs/")
    parser.add_argument("--skip-slow-link", action="store_true",
                        help="do not measure through the 100 Mbit/s link")
    parser.add_argument("--floor-variants", default="",
                        help="comma-separated floor variants to try (default: all)")
    parser.add_argument("--import-jobs", type=int, default=0,
                        help="pass --jobs N to import (default: its own default)")
    parser.add_argument("--import-remote-format", choices=transfer.REMOTE_FORMATS,
                        help="pass --remote-format to import (default: its own "
                             f"default, {transfer.DEFAULT_REMOTE_FORMAT})")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help="how many times the loopback floor, import and "
                             "manual route are measured, back to back; each "
                             "counts the median (default %(default)s)")
    parser.add_argument("--cli", choices=("paster", "ckan"), default="paster",
                        help="how to invoke our commands (default %(default)s)")
    parser.add_argument("--stages", default="",
                        help="comma-separated stages to measure (default: "
                             "all): " + ", ".join(STAGE_NAMES) + "; the steps "
                             "of the others say 'not measured: --stages'")
    parser.add_argument("--keep-old", action="store_true",
                        help="keep the generated old-site databases")
    args = parser.parse_args(argv)
    if args.datasets < 1 or args.compare_datasets < 0:
        parser.error("--datasets must be positive and --compare-datasets >= 0")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        args.stages = parse_stages(args.stages)
    except ValueError as error:
        parser.error(f"--stages: {error} (one of {', '.join(STAGE_NAMES)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    admin_url = os.environ.get("DATAGOVUK_PG_ADMIN_URL")
    ckan_url = os.environ.get("CKAN_SQLALCHEMY_URL")
    if not admin_url or not ckan_url:
        print("Error: DATAGOVUK_PG_ADMIN_URL and CKAN_SQLALCHEMY_URL are not set: "
              "run it with `make bench`, which starts a private PostgreSQL",
              file=sys.stderr)
        return 2
    def terminate(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, terminate)
    bench = Bench(args, admin_url, ckan_url)
    results = bench.main()
    write_results(results, bench.output)
    sys.stdout.write(format_text(results))
    say(f"results in {os.path.join(bench.output, 'results.json')} and results.txt")
    return 0 if bench.complete else 130
