"""The text of ``migrate``'s report: a summary by default, every step's
detail with ``-v``.  Reads a :class:`migrate.MigrationReport` (given, never
imported: ``migrate`` imports this module).
"""
from __future__ import annotations

import re
import textwrap
from typing import Any, Optional

def format_summary(report: Any) -> str:
    """The report in a few lines: what changed, not how."""
    lines = [f"Migration of {report.database}: {report.outcome}; schema "
             f"version: {report.schema_before} -> {report.schema_after}",
             _data_migrations_line(report)]
    pairs = [f"{name} {report.counts_before.get(name, '-')} -> "
             f"{report.counts_after.get(name, '-')}" for name in dict.fromkeys(
                 [*report.counts_before, *report.counts_after])
             if report.counts_before.get(name)
             != report.counts_after.get(name)]
    if pairs:
        lines += textwrap.wrap("Counts that changed: " + ", ".join(pairs),
                               100, subsequent_indent="  ")
    if report.demoted:
        lines.append(f"Demoted sysadmins ({len(report.demoted)}): "
                     + ", ".join(name for name, _ in report.demoted))
    done = []
    if report.fixes:
        done.append(f"upgrade fixes: {len(report.fixes)} ("
                    + ", ".join(fix.name for fix in report.fixes) + ")")
    if report.archive and report.archive.tables:
        done.append(f"archived in {report.archive.schema}: "
                    f"{len(report.archive.named('copied'))} table(s) "
                    f"copied, {len(report.archive.named('moved'))} moved")
    if done:
        text = "; ".join(done)
        lines.append(text[0].upper() + text[1:] + " (-v lists them)")
    lines.extend(verify_lines(report, verbose=False))
    return "\n".join(lines)


def verify_lines(report: Any, verbose: bool) -> list[str]:
    """What verify found: one line when every check holds (each check's
    line too with ``verbose``), the first differences in full when not."""
    if report.verify_skipped:
        return [f"Verify: {report.verify_skipped}"]
    found = report.verification
    if not found:
        return []
    names = [step["name"] for step in found["steps"]]
    asked = ("API sample" in names and f"; the API sample (seed "
             f"{found['seed']}) after the commit") or (
        "; no API sample: nothing committed" if report.options.dry_run
        else "")
    lines = [f"Verify: {'every check holds' if found['ok'] else 'FAILED'} "
             f"({len(names) - ('API sample' in names)} database checks "
             f"before the commit{asked})"]
    lines += [f"  {step['name']}: {step['compared']} {step['what']}: "
              f"{step['result']}" + (f", {step['differences']} "
                                     "difference(s)" if step["differences"]
                                     else "")
              for step in found["steps"]
              if verbose or step["result"] == "failed"]
    if found["differences"]:
        lines.append("First differences (subject: field: expected, found):")
        lines += [f"  [{d['check']}] {d['subject']}: {d['field']}: expected "
                  f"{d['expected']!r}, found {d['found']!r}"
                  for d in found["differences"]]
    return lines


def _data_migrations_line(report: Any) -> str:
    if report.skipped_migrations:
        return ("Data migrations: none run (--no-data-migrations); "
                "recorded as skipped: " + ", ".join(report.skipped_migrations))
    if not report.data_migrations:
        return "Data migrations: nothing to apply"
    return "Data migrations: " + ", ".join(
        f"{applied.name} ({applied.duration_seconds:.1f} s)"
        for applied in report.data_migrations)


def format_report(report: Any, verbose: bool = True) -> str:
    if not verbose:
        return format_summary(report)
    lines = [f"Migration of {report.database}: {report.outcome}",
             f"  database: {report.state}",
             f"  schema version: {report.schema_before} -> "
             f"{report.schema_after}"]
    if report.counts_before or report.counts_after:
        lines.append("Counts (before -> after):")
        for name in dict.fromkeys([*report.counts_before,
                                   *report.counts_after]):
            before = report.counts_before.get(name, "-")
            after = report.counts_after.get(name, "-")
            lines.append(f"  {name:<24} {before!s:>8} -> {after!s:>8}")
    lines.append(_data_migrations_line(report))
    for applied in report.data_migrations:
        lines.append(f"  {applied.name}:")
        lines.extend(f"    {step}" for step in applied.steps)
    if report.demoted:
        lines.append(f"Demoted sysadmins ({len(report.demoted)}; promote "
                     "them again with `datagovuk promote --demoted`):")
        lines.append("  " + ", ".join(name for name, _ in report.demoted))
    if report.traps:
        lines.append("Upgrade traps found (the email clashes as the data "
                     "migrations left them):")
        lines.extend(f"  {trap}" for trap in report.traps)
    if report.fixes:
        lines.append("Fixes applied:")
        lines.extend(f"  {fix}" for fix in report.fixes)
    if report.upgrade:
        result = report.upgrade
        if result.resources_relinked or result.orphan_resources_deleted:
            revisions = (result.resource_revisions_relinked
                         or "none, revision 107 drops them")
            lines.append(
                f"  resources relinked to their datasets across CKAN 074: "
                f"{result.resources_relinked} (revisions: {revisions}"
                "); deleted as their "
                f"dataset is gone: {result.orphan_resources_deleted} "
                f"(revisions: {result.orphan_resource_revisions_deleted})")
    archived = report.archive
    if archived and (archived.tables or archived.migrate_version_rows):
        lines.append(f"Archived in schema {archived.schema}:")
        for table in archived.tables:
            lines.append(f"  {table.how} {table.name} ({table.rows} rows): "
                         f"{table.reason}")
        if archived.migrate_version_rows:
            lines.append(f"  moved {archived.migrate_version_rows} other "
                         "extensions' row(s) of migrate_version to "
                         f"{archived.schema}.migrate_version")
    elif not report.options.skip_upgrade:
        lines.append("Archived: nothing" + (
            " (--no-archive: tables CKAN's upgrade drops were not copied)"
            if not report.options.archive else ""))
    lines.extend(_history_lines(report.history))
    if report.upgrade:
        result = report.upgrade
        legacy = re.match(r"legacy (\d+)$", report.schema_before)
        noop = (f" (those up to legacy {legacy.group(1)} only recorded)"
                if legacy else "")
        lines.append(f"Schema upgrade: {len(result.revisions)} revision(s)"
                     f"{noop} in {result.seconds:.1f} s")
        slowest = sorted(result.revisions, key=lambda step: -step.seconds)[:5]
        for step in slowest:
            if step.seconds >= 0.05:
                lines.append(f"  {step.source} {step.revision} "
                             f"{step.doc.splitlines()[0] if step.doc else ''}"
                             f": {step.seconds:.1f} s")
        for plugin, (before, after) in result.plugins.items():
            lines.append(f"  plugin {plugin}: {before or 'none'} -> {after}")
    lines.extend(verify_lines(report, verbose=True))
    return "\n".join(lines)


def _history_lines(result: Optional[Any]) -> list[str]:
    if result is None:
        return []
    if result.skipped:
        lines = [f"History: {result.skipped}"]
    else:
        lines = [f"History: {result.revisions} revisions of {result.datasets} "
                 f"datasets as activities in {result.seconds:.1f} s: "
                 f"{result.completed} of CKAN 2.2's activities completed, "
                 f"{result.added} added, {sum(result.left.values())} left"]
        lines.extend(f"  left {count}: {reason}"
                     for reason, count in result.left.items())
        lines.append(f"  actors: {result.actors_deleted} activities of "
                     "deleted users moved to the site user (old name kept), "
                     f"{result.actors_renamed} of renamed users renamed")
        if result.actors_unmapped:
            lines.append(f"  left {result.actors_unmapped} activities of "
                         "deleted users pointing at them: no user is named "
                         "as the new site (ckan.site_id) yet")
    if result.mapping_archived:
        lines.append(f"  activity -> revision mapping of "
                     f"{result.mapping_archived} activities archived in "
                     "datagovuk_legacy.activity_revision")
    return lines
