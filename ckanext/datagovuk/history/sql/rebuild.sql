-- Each dataset as it was at each revision that changed it, in the shape
-- CKAN 2.12's package_show returns, written into the data of one activity
-- per revision.  Runs on the legacy schema before any data migration, after
-- resources_by_group.sql or resources_by_package.sql has made
-- datagovuk_h_resource.  A row of a *_revision table is the version valid
-- at T when revision_timestamp <= T < expired_timestamp.
--
-- GUCs: datagovuk.site_user (the new site's user: actor of revisions whose
-- author is no user), datagovuk.history_licenses (CKAN's licences as a JSON
-- object id -> {title, url, isopen}).
--
-- Leaves datagovuk_h_outcome (activity id, revision id, dataset, outcome,
-- reason) for the report and the archive, datagovuk_h_written (what each
-- activity written was made of) for actors.sql and datagovuk_h_stamp (each
-- converted activity's UTC time) for restore_timestamps_known.sql.
-- Set-based: no loop per revision.
--
-- The JSON is built as json (text, written once), not jsonb: jsonb would
-- be built as a tree and then printed, which cost more than the rest of
-- the conversion.  JIT compilation is off while it runs: the planner's
-- estimates for the range joins below are high enough to compile every
-- statement, which takes longer than running them.
SET LOCAL jit = off;

-- Activity data written by CKAN 2.2 is JSON text; anything else counts as
-- empty rather than stopping the migration.
CREATE OR REPLACE FUNCTION pg_temp.datagovuk_jsonb(value text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN CASE WHEN jsonb_typeof(value::jsonb) = 'object' THEN value::jsonb END;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- A timestamp as Python's isoformat() writes it (package_show's format):
-- microseconds always six digits, left out when zero.  This and the
-- function below are PL/pgSQL: a SQL function that uses an argument twice
-- is not inlined, and calling one costs more than its work.
CREATE OR REPLACE FUNCTION pg_temp.datagovuk_iso(value timestamp) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN to_char(value, CASE WHEN date_trunc('second', value) = value
                               THEN 'YYYY-MM-DD"T"HH24:MI:SS'
                               ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US' END);
END $$;

-- Two JSON objects with no key in common as one, from their text as
-- json_build_object and jsonb print it (from '{' to '}', no space
-- around), without parsing either.  The large one, a, is cut by bytes:
-- counting its characters (left, substr) costs more than the conversion.
CREATE OR REPLACE FUNCTION pg_temp.datagovuk_json_concat(a text, b text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF b IS NULL OR b = '{}' THEN
        RETURN a;
    ELSIF a = '{}' THEN
        RETURN b;
    END IF;
    RETURN convert_from(substring(convert_to(a, getdatabaseencoding())
                                  FROM 1 FOR octet_length(a) - 1),
                        getdatabaseencoding())
           || ', ' || substr(b, 2);
END $$;

-- Each active version of a resource as package_show shows it, built once
-- (a version is in every dataset version it lived through).  This table
-- and the other parts' are written in dataset order, so that the versions
-- of one dataset, built one after the other, read a few pages of each.
CREATE TEMP TABLE datagovuk_h_resource_version ON COMMIT DROP AS
SELECT r.package_id, r.id, r.position, r.revision_timestamp,
       coalesce(r.expired_timestamp, 'infinity') AS expired_timestamp,
       (jsonb_build_object(
           'id', r.id, 'package_id', r.package_id, 'url', r.url,
           'format', r.format, 'description', r.description,
           'hash', r.hash, 'position', r.position, 'name', r.name,
           'resource_type', r.resource_type, 'mimetype', r.mimetype,
           'mimetype_inner', r.mimetype_inner, 'size', r.size,
           'created', pg_temp.datagovuk_iso(r.created),
           'last_modified', pg_temp.datagovuk_iso(r.last_modified),
           -- CKAN's 094 sets a resource's metadata_modified to created
           'metadata_modified', pg_temp.datagovuk_iso(r.created),
           'cache_url', r.cache_url,
           'cache_last_updated', pg_temp.datagovuk_iso(r.cache_last_updated),
           'url_type', r.url_type, 'state', r.state)
       || coalesce(pg_temp.datagovuk_jsonb(r.extras), '{}'))::json
       AS dict
FROM datagovuk_h_resource r
WHERE r.state = 'active'
ORDER BY r.package_id;
CREATE INDEX ON datagovuk_h_resource_version (package_id);
-- Temporary tables get no statistics by themselves: without them the
-- planner scans a whole table per dataset version.
ANALYZE datagovuk_h_resource_version;

CREATE TEMP TABLE datagovuk_h_extra ON COMMIT DROP AS
SELECT package_id, key, state, revision_id, revision_timestamp,
       coalesce(expired_timestamp, 'infinity') AS expired_timestamp,
       json_build_object('key', key, 'value', value) AS dict
FROM package_extra_revision WHERE package_id IS NOT NULL
ORDER BY package_id;
CREATE INDEX ON datagovuk_h_extra (package_id);
ANALYZE datagovuk_h_extra;

CREATE TEMP TABLE datagovuk_h_tag ON COMMIT DROP AS
SELECT pt.package_id, pt.state, pt.revision_id, pt.revision_timestamp,
       coalesce(pt.expired_timestamp, 'infinity') AS expired_timestamp,
       t.id AS tag_id, t.name, t.vocabulary_id
FROM package_tag_revision pt JOIN tag t ON t.id = pt.tag_id
WHERE pt.package_id IS NOT NULL
ORDER BY pt.package_id;
CREATE INDEX ON datagovuk_h_tag (package_id);
ANALYZE datagovuk_h_tag;

CREATE TEMP TABLE datagovuk_h_member ON COMMIT DROP AS
SELECT table_id AS package_id, group_id, state, revision_id, revision_timestamp,
       coalesce(expired_timestamp, 'infinity') AS expired_timestamp
FROM member_revision WHERE table_name = 'package'
ORDER BY table_id;
CREATE INDEX ON datagovuk_h_member (package_id);
ANALYZE datagovuk_h_member;

CREATE TEMP TABLE datagovuk_h_group_version ON COMMIT DROP AS
SELECT continuity_id AS group_id, name, title, type, description, image_url,
       created, is_organization, approval_status, state, revision_timestamp,
       coalesce(expired_timestamp, 'infinity') AS expired_timestamp
FROM group_revision;
CREATE INDEX ON datagovuk_h_group_version (group_id);
ANALYZE datagovuk_h_group_version;

-- The revisions that changed a dataset or one of its parts.
CREATE TEMP TABLE datagovuk_h_change ON COMMIT DROP AS
SELECT package_id, revision_id, min(revision_timestamp) AS ts FROM (
    SELECT continuity_id AS package_id, revision_id, revision_timestamp
    FROM package_revision
    UNION ALL SELECT package_id, revision_id, revision_timestamp FROM datagovuk_h_extra
    UNION ALL SELECT package_id, revision_id, revision_timestamp FROM datagovuk_h_tag
    UNION ALL SELECT package_id, revision_id, revision_timestamp FROM datagovuk_h_member
    UNION ALL SELECT package_id, revision_id, revision_timestamp FROM datagovuk_h_resource
) c
WHERE package_id IS NOT NULL AND revision_id IS NOT NULL
GROUP BY package_id, revision_id;
ANALYZE datagovuk_h_change;

-- The package row valid at each of those revisions (none: the revision
-- touched a part before the dataset existed, or after it was purged).
CREATE TEMP TABLE datagovuk_h_point ON COMMIT DROP AS
SELECT DISTINCT ON (c.package_id, c.revision_id)
       c.package_id, c.revision_id, c.ts, r.author AS revision_author,
       r.message AS revision_message, p.name, p.title, p.version, p.url,
       p.notes, p.author, p.author_email, p.maintainer, p.maintainer_email,
       p.state, p.license_id, p.type, p.owner_org, p.private,
       p.metadata_modified, p.creator_user_id
FROM datagovuk_h_change c
JOIN package_revision p ON p.continuity_id = c.package_id
     AND p.revision_timestamp <= c.ts
     AND c.ts < coalesce(p.expired_timestamp, 'infinity')
LEFT JOIN revision r ON r.id = c.revision_id
ORDER BY c.package_id, c.revision_id, p.revision_timestamp DESC;
ANALYZE datagovuk_h_point;

CREATE TEMP TABLE datagovuk_h_created ON COMMIT DROP AS
SELECT continuity_id AS package_id, min(revision_timestamp) AS created
FROM package_revision GROUP BY continuity_id;
ANALYZE datagovuk_h_created;

-- Stored out of line uncompressed: each package is read again by the
-- statements writing the activities.
CREATE TEMP TABLE datagovuk_h_version (
    package_id text, revision_id text, ts timestamp, state text, author text,
    message text, number bigint, previous_state text, package text,
    revision text) ON COMMIT DROP;
ALTER TABLE datagovuk_h_version ALTER COLUMN package SET STORAGE EXTERNAL;
INSERT INTO datagovuk_h_version
WITH licence AS (
    SELECT key AS id, value AS licence
    FROM jsonb_each(coalesce(nullif(current_setting('datagovuk.history_licenses', true), ''), '{}')::jsonb)
)
SELECT pt.package_id, pt.revision_id, pt.ts, pt.state,
       pt.revision_author AS author, pt.revision_message AS message,
       row_number() OVER w AS number, lag(pt.state) OVER w AS previous_state,
    pg_temp.datagovuk_json_concat(json_build_object(
        'id', pt.package_id, 'name', pt.name, 'title', btrim(pt.title),
        'version', pt.version, 'url', pt.url, 'notes', pt.notes,
        'author', pt.author, 'author_email', pt.author_email,
        'maintainer', pt.maintainer, 'maintainer_email', pt.maintainer_email,
        'state', pt.state, 'license_id', pt.license_id,
        'type', coalesce(pt.type, 'dataset'), 'owner_org', pt.owner_org,
        'private', coalesce(pt.private, false),
        'metadata_modified', pg_temp.datagovuk_iso(pt.metadata_modified),
        'metadata_created', pg_temp.datagovuk_iso(cr.created),
        'creator_user_id', pt.creator_user_id,
        'isopen', coalesce((l.licence->>'isopen')::boolean, false),
        'license_title', coalesce(l.licence->>'title', pt.license_id),
        'extras', coalesce(ex.list, '[]'),
        'resources', coalesce(res.list, '[]'),
        'num_resources', res.n,
        'tags', coalesce(tg.list, '[]'),
        'num_tags', tg.n,
        'groups', coalesce(gr.list, '[]'),
        'organization', org.dict,
        'relationships_as_subject', '[]'::json,
        'relationships_as_object', '[]'::json)::text,
        CASE WHEN l.licence->>'url' IS NOT NULL
             THEN json_build_object('license_url', l.licence->>'url')::text
        END) AS package,
    json_build_object(
        'id', pt.revision_id, 'timestamp', pg_temp.datagovuk_iso(pt.ts),
        'author', pt.revision_author, 'message', pt.revision_message)::text
        AS revision
FROM datagovuk_h_point pt
JOIN datagovuk_h_created cr ON cr.package_id = pt.package_id
LEFT JOIN licence l ON l.id = pt.license_id
LEFT JOIN LATERAL (
    -- CKAN 2.12 keeps extras in a jsonb object: package_show lists them in
    -- its key order (shorter keys first, then bytewise).
    SELECT json_agg(e.dict ORDER BY octet_length(e.key), e.key COLLATE "C")
           AS list
    FROM datagovuk_h_extra e
    WHERE e.package_id = pt.package_id AND e.state = 'active'
      AND e.revision_timestamp <= pt.ts AND pt.ts < e.expired_timestamp
) ex ON true
LEFT JOIN LATERAL (
    SELECT json_agg(r.dict ORDER BY r.position, r.id) AS list, count(*) AS n
    FROM datagovuk_h_resource_version r
    WHERE r.package_id = pt.package_id
      AND r.revision_timestamp <= pt.ts AND pt.ts < r.expired_timestamp
) res ON true
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object(
               'id', t.tag_id, 'name', t.name, 'display_name', t.name,
               'state', t.state, 'vocabulary_id', t.vocabulary_id)
             ORDER BY t.name COLLATE "C") AS list, count(*) AS n
    FROM datagovuk_h_tag t
    WHERE t.package_id = pt.package_id AND t.state = 'active'
      AND t.revision_timestamp <= pt.ts AND pt.ts < t.expired_timestamp
) tg ON true
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object(
               'id', g.group_id, 'name', g.name, 'title', g.title,
               'display_name', coalesce(nullif(g.title, ''), g.name),
               'description', g.description,
               'image_display_url', coalesce(g.image_url, ''))
             ORDER BY coalesce(nullif(g.title, ''), g.name) COLLATE "C") AS list
    FROM datagovuk_h_member m
    JOIN datagovuk_h_group_version g ON g.group_id = m.group_id
         AND g.revision_timestamp <= pt.ts AND pt.ts < g.expired_timestamp
    WHERE m.package_id = pt.package_id AND m.state = 'active'
      AND NOT coalesce(g.is_organization, false) AND g.state = 'active'
      AND m.revision_timestamp <= pt.ts AND pt.ts < m.expired_timestamp
) gr ON true
LEFT JOIN LATERAL (
    SELECT json_build_object(
               'id', g.group_id, 'name', g.name, 'title', g.title,
               'type', g.type, 'description', g.description,
               'image_url', g.image_url, 'created', pg_temp.datagovuk_iso(g.created),
               'is_organization', g.is_organization,
               'approval_status', g.approval_status, 'state', g.state) AS dict
    FROM datagovuk_h_group_version g
    WHERE g.group_id = pt.owner_org AND g.state = 'active'
      AND g.revision_timestamp <= pt.ts AND pt.ts < g.expired_timestamp
    ORDER BY g.revision_timestamp DESC LIMIT 1
) org ON true
WINDOW w AS (PARTITION BY pt.package_id ORDER BY pt.ts, pt.revision_id);
CREATE INDEX ON datagovuk_h_version (package_id, revision_id);
ANALYZE datagovuk_h_version;

-- Each dataset activity there is, its data parsed: in one statement when
-- every one parses (no subtransaction per row), else row by row.
DO $parse$
BEGIN
    CREATE TEMP TABLE datagovuk_h_old ON COMMIT DROP AS
    SELECT id, revision_id, object_id, user_id, data::jsonb AS data_json
    FROM activity
    WHERE activity_type IN ('new package', 'changed package', 'deleted package');
EXCEPTION WHEN others THEN
    CREATE TEMP TABLE datagovuk_h_old ON COMMIT DROP AS
    SELECT id, revision_id, object_id, user_id,
           pg_temp.datagovuk_jsonb(data) AS data_json
    FROM activity
    WHERE activity_type IN ('new package', 'changed package', 'deleted package');
END $parse$;
UPDATE datagovuk_h_old SET data_json = NULL
WHERE jsonb_typeof(data_json) IS DISTINCT FROM 'object';
ANALYZE datagovuk_h_old;

-- What happens to each dataset activity CKAN 2.2 wrote.
CREATE TEMP TABLE datagovuk_h_outcome ON COMMIT DROP AS
SELECT a.id AS activity_id, a.revision_id, a.object_id,
       CASE WHEN complete THEN 'left'
            WHEN v.package_id IS NOT NULL THEN 'completed'
            ELSE 'left' END AS outcome,
       CASE WHEN complete THEN 'its data already holds the whole dataset'
            WHEN v.package_id IS NOT NULL THEN NULL
            WHEN a.revision_id IS NULL THEN 'it names no revision'
            ELSE 'its revision changed nothing of the dataset, or the dataset did not exist then'
       END AS reason
FROM (SELECT o.*, coalesce(o.data_json->'package' ? 'resources', false) AS complete
      FROM datagovuk_h_old o) a
LEFT JOIN datagovuk_h_version v
       ON v.package_id = a.object_id AND v.revision_id = a.revision_id;
ANALYZE datagovuk_h_outcome;

-- What each activity written is made of: its dataset version, its actor
-- and what else CKAN 2.2 put in its data.  CKAN 2.2's activity keeps its
-- user; a revision CKAN 2.2 wrote no activity for gets one, done by the
-- user the revision names, or else by the new site's user.
CREATE TEMP TABLE datagovuk_h_written ON COMMIT DROP AS
SELECT o.activity_id, v.package_id, v.revision_id, v.ts, old.user_id,
       coalesce((SELECT u.name FROM "user" u WHERE u.id = old.user_id),
                v.author) AS actor,
       coalesce(old.data_json, '{}') - 'package' - 'actor'
           - 'datagovuk_revision' AS rest,
       NULL::text AS activity_type
FROM datagovuk_h_outcome o
JOIN datagovuk_h_old old ON old.id = o.activity_id
JOIN datagovuk_h_version v ON v.package_id = o.object_id AND v.revision_id = o.revision_id
WHERE o.outcome = 'completed'
UNION ALL
SELECT md5(v.package_id || '/' || v.revision_id)::uuid::text, v.package_id,
       v.revision_id, v.ts, coalesce(u.id, su.id), v.author, '{}',
       CASE WHEN v.number = 1 THEN 'new package'
            WHEN v.state = 'deleted' AND v.previous_state IS DISTINCT FROM 'deleted'
                THEN 'deleted package'
            ELSE 'changed package' END
FROM datagovuk_h_version v
LEFT JOIN "user" u ON u.name = v.author
LEFT JOIN "user" su ON su.name = current_setting('datagovuk.site_user', true)
WHERE NOT EXISTS (SELECT 1 FROM activity a
                  WHERE a.object_id = v.package_id AND a.revision_id = v.revision_id);
ALTER TABLE datagovuk_h_written ADD PRIMARY KEY (activity_id);
ANALYZE datagovuk_h_written;

-- An activity's data from its parts (also for actors.sql): the package
-- and the revision as JSON text, written around them without parsing them
-- again (each is the text of a json_build_object).
CREATE OR REPLACE FUNCTION pg_temp.datagovuk_activity_data(
    package text, actor text, revision text, rest jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_temp.datagovuk_json_concat(
        '{"package": ' || package || ', "actor": ' || to_json(actor)::text
        || ', "datagovuk_revision": ' || revision || '}',
        rest::text)
$$;

UPDATE activity a
SET timestamp = w.ts,
    data = pg_temp.datagovuk_activity_data(v.package, w.actor, v.revision, w.rest)
FROM datagovuk_h_written w
JOIN datagovuk_h_version v ON v.package_id = w.package_id AND v.revision_id = w.revision_id
WHERE a.id = w.activity_id AND w.activity_type IS NULL;

INSERT INTO activity (id, timestamp, user_id, object_id, revision_id,
                      activity_type, data)
SELECT w.activity_id, w.ts, w.user_id, w.package_id, w.revision_id,
       w.activity_type,
       pg_temp.datagovuk_activity_data(v.package, w.actor, v.revision, w.rest)
FROM datagovuk_h_written w
JOIN datagovuk_h_version v ON v.package_id = w.package_id AND v.revision_id = w.revision_id
WHERE w.activity_type IS NOT NULL;

INSERT INTO datagovuk_h_outcome (activity_id, revision_id, object_id, outcome, reason)
SELECT activity_id, revision_id, package_id, 'added', NULL
FROM datagovuk_h_written WHERE activity_type IS NOT NULL;

-- Each activity converted, now or by an earlier run, with its revision's
-- time, for restore_timestamps_known.sql.
CREATE TEMP TABLE datagovuk_h_stamp ON COMMIT DROP AS
SELECT activity_id, ts FROM datagovuk_h_written
UNION ALL
SELECT o.id, (o.data_json #>> '{datagovuk_revision,timestamp}')::timestamp
FROM datagovuk_h_old o
WHERE o.data_json #>> '{datagovuk_revision,timestamp}' IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM datagovuk_h_written w WHERE w.activity_id = o.id);
ALTER TABLE datagovuk_h_stamp ADD PRIMARY KEY (activity_id);

RESET jit;
