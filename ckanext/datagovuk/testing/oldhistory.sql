-- Realistic history on a generated old site (run after oldsite's
-- populate, on its legacy schema): values that changed between versions,
-- resources added after a dataset was created, one more revision per
-- active dataset that only edits an extra, and CKAN 2.2's own activities,
-- one per revision that changed a dataset, holding the package table's
-- columns only (table_dictize), as CKAN 2.2.4's activity_stream_item wrote
-- them.  The live rows stay as populate left them: only the older versions
-- change.  Set-based: no loop per dataset.

-- 1. Older versions of the extras an edit touched held older values.
WITH ranked AS (
    SELECT id, revision_id,
           row_number() OVER (PARTITION BY id ORDER BY revision_timestamp DESC) - 1 AS later
    FROM package_extra_revision
    WHERE key IN ('temporal_coverage-to', 'update_frequency', 'metadata-date')
)
UPDATE package_extra_revision e
SET value = CASE
        WHEN e.key = 'temporal_coverage-to' AND e.value ~ '^[0-9]{4}$'
            THEN (e.value::int - r.later::int)::text
        WHEN e.key = 'update_frequency'
            THEN CASE WHEN e.value = 'annual' THEN 'quarterly' ELSE 'annual' END
        WHEN e.key = 'metadata-date' AND e.value ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
            THEN (e.value::date - 30 * r.later::int)::text
        ELSE e.value END
FROM ranked r
WHERE e.id = r.id AND e.revision_id = r.revision_id AND r.later > 0;

-- 2. Older versions of a file had another URL and description.
WITH ranked AS (
    SELECT id, revision_id,
           row_number() OVER (PARTITION BY id ORDER BY revision_timestamp DESC) - 1 AS later
    FROM resource_revision
)
UPDATE resource_revision x
SET url = regexp_replace(x.url, '(\.[a-z]+)?$', '-v' || r.later || '\1'),
    description = x.description || ' (superseded)'
FROM ranked r
WHERE x.id = r.id AND x.revision_id = r.revision_id AND r.later > 0;

-- 3. A third of the files that lived through several revisions were only
--    added at the second: their first version goes.
WITH ranked AS (
    SELECT id, revision_id,
           row_number() OVER (PARTITION BY id ORDER BY revision_timestamp) AS version,
           count(*) OVER (PARTITION BY id) AS versions
    FROM resource_revision
)
DELETE FROM resource_revision x USING ranked r
WHERE x.id = r.id AND x.revision_id = r.revision_id
  AND r.version = 1 AND r.versions > 1 AND get_byte(decode(md5(x.id), 'hex'), 0) % 3 = 0;

-- 4. One more revision per active dataset: a few days after its last
--    change, its publisher corrected temporal_coverage-from (earlier
--    versions said a year later).
CREATE TEMP TABLE oldhistory_edit ON COMMIT DROP AS
SELECT e.id AS extra_id, e.package_id,
       md5('oldhistory/' || e.package_id)::uuid::text AS revision_id,
       p.metadata_modified + interval '3 days 2 hours' AS ts,
       coalesce(u.name, 'dgu_support') AS author
FROM package_extra e
JOIN package p ON p.id = e.package_id
LEFT JOIN "user" u ON u.id = p.creator_user_id
WHERE e.key = 'temporal_coverage-from' AND e.state = 'active'
  AND e.value ~ '^[0-9]{4}$' AND p.state = 'active';

INSERT INTO revision (id, timestamp, author, message, state)
SELECT revision_id, ts, author, 'Corrected the temporal coverage', 'active'
FROM oldhistory_edit;

UPDATE package_extra_revision e
SET value = (e.value::int + 1)::text,
    expired_timestamp = CASE WHEN e.current THEN o.ts ELSE e.expired_timestamp END,
    expired_id = CASE WHEN e.current THEN o.revision_id ELSE e.expired_id END,
    current = false
FROM oldhistory_edit o
WHERE e.id = o.extra_id AND e.value ~ '^[0-9]{4}$';

INSERT INTO package_extra_revision (id, key, value, revision_id, state,
    package_id, continuity_id, expired_id, revision_timestamp,
    expired_timestamp, current)
SELECT x.id, x.key, x.value, o.revision_id, x.state, x.package_id, x.id,
       NULL, o.ts, '9999-12-31', true
FROM oldhistory_edit o JOIN package_extra x ON x.id = o.extra_id;

UPDATE package_extra x SET revision_id = o.revision_id
FROM oldhistory_edit o WHERE x.id = o.extra_id;

-- 5. CKAN 2.2's activities: one per revision that changed a dataset (its
--    row or its extras; the generator's file changes share those
--    revisions), replacing the generator's first-and-last ones.
DELETE FROM activity_detail d USING activity a
WHERE d.activity_id = a.id
  AND a.activity_type IN ('new package', 'changed package', 'deleted package');
DELETE FROM activity
WHERE activity_type IN ('new package', 'changed package', 'deleted package');

CREATE TEMP TABLE oldhistory_change ON COMMIT DROP AS
SELECT c.package_id, c.revision_id, min(c.revision_timestamp) AS ts
FROM (SELECT continuity_id AS package_id, revision_id, revision_timestamp
      FROM package_revision
      UNION ALL
      SELECT package_id, revision_id, revision_timestamp
      FROM package_extra_revision WHERE package_id IS NOT NULL) c
GROUP BY c.package_id, c.revision_id;

CREATE TEMP TABLE oldhistory_activity ON COMMIT DROP AS
SELECT md5('activity/' || c.package_id || '/' || c.revision_id)::uuid::text AS id,
       c.package_id, c.revision_id, c.ts, r.author,
       row_number() OVER w AS number, p.state,
       lag(p.state) OVER w AS previous_state,
       (to_jsonb(p) - 'continuity_id' - 'expired_id' - 'revision_timestamp'
        - 'expired_timestamp' - 'current')
        || jsonb_build_object('id', p.continuity_id) AS package
FROM oldhistory_change c
JOIN revision r ON r.id = c.revision_id
JOIN package_revision p ON p.continuity_id = c.package_id
     AND p.revision_timestamp <= c.ts AND c.ts < p.expired_timestamp
WINDOW w AS (PARTITION BY c.package_id ORDER BY c.ts, c.revision_id);

INSERT INTO activity (id, timestamp, user_id, object_id, revision_id,
                      activity_type, data)
SELECT a.id, a.ts, coalesce(u.id, su.id), a.package_id, a.revision_id,
       CASE WHEN a.number = 1 THEN 'new package'
            WHEN a.state = 'deleted' AND a.previous_state <> 'deleted'
                THEN 'deleted package'
            ELSE 'changed package' END,
       jsonb_build_object('package', a.package)::text
FROM oldhistory_activity a
LEFT JOIN "user" u ON u.name = a.author
LEFT JOIN "user" su ON su.name = 'dgu_support';

INSERT INTO activity_detail (id, activity_id, object_id, object_type,
                             activity_type, data)
SELECT md5('detail/' || a.id)::uuid::text, a.id, a.package_id, 'Package',
       CASE WHEN a.number = 1 THEN 'new' ELSE 'changed' END,
       jsonb_build_object('package', a.package)::text
FROM oldhistory_activity a;
