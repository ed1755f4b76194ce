"""The migration benchmark: ``make bench`` (``BENCH_ARGS=...`` for options).

One run, on the same generated data, measures:

* the **floor**: the fastest plain copy of the old database with PostgreSQL's
  own tools between the "remote host" and this one: a selection pass copies
  once with each of several flag sets (all recorded), and the fastest is
  timed in rounds, as the import is;
* the seed's **manual route**: ``ssh host pg_dump ckan > file`` (plain SQL, on
  the remote), ``scp`` the file, create the database, ``psql -f`` it;
* both transfer routes again through a **100 Mbit/s link** (a token-bucket
  TCP proxy on loopback in front of the remote's sshd);
* our commands, run as an operator runs them (``paster datagovuk ... -c INI``
  in a subprocess with a generated ini): ``import`` (over loopback and over the
  link), ``migrate --skip-upgrade`` (the data migration), ``migrate`` (the
  schema upgrade), ``promote --demoted`` and ``verify`` (its sample and
  ``--all``); at the main scale N and at the comparison scale M, for
  linearity and memory growth; ``migrate``'s history phase and revision
  count from its ``-v`` report;
* the search index of the migrated site, into the run's own Solr (every
  command of ours uses it: ``reindex`` and ``migrate --from`` swap its live
  core): CKAN's ``ckan search-index rebuild -i``, a fork-safe copy of its
  ``rebuild-fast``, and our ``datagovuk reindex``, with a sample of their
  documents compared (``search``);
* the loopback steps in a ratio (the floor, ``import``, the manual route)
  ``--rounds`` times (default 3), back to back; each counts the median of its
  rounds, since one copy on a shared machine can be well off
  (docs/benchmark.rst, "Measurements behind the code");
* the busy CPU seconds of the whole machine during each step (``/proc/stat``),
  both "hosts" included, so that a step bound by the two CPUs shows as such;
* the peak memory of every process each step runs: the process tree is sampled
  every 50 ms (``VmHWM``/``VmRSS`` in ``/proc/PID/status``) and classified by
  executable: our Python process, the PostgreSQL client programs, ssh, and the
  remote side (the programs the sshd runs for us).

The "remote host" is a private sshd on loopback (``localssh``); its
``pg_dump`` reaches the old database in the private PostgreSQL cluster (the
one ``make bench`` starts) through a libpq conninfo.  Results go to
``OUTPUT/results.json`` and ``OUTPUT/results.txt``; the output of every
command is kept in ``OUTPUT/logs/``.

    python -m ckanext.datagovuk.testing.localpg run -- \\
        python -m ckanext.datagovuk.testing.bench --datasets 5000 --compare-datasets 500

Its rooms: ``run`` (a run and the stages of each scale), ``steps`` (a step,
and ``STAGES``, the registry of the stages and the steps they record),
``cluster`` (the private PostgreSQL), ``remote`` (the "remote host" over
ssh), ``link`` (the 100 Mbit/s proxy), ``memory`` (the sampler),
``machine``, ``floor``, ``manual``, ``commands`` (ours, with the ini
template ``bench.ini.in``), ``search`` (the search index steps),
``ratios`` (the targets), ``report`` and ``cli``.
"""
