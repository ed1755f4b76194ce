-- manifest.sql: what the move must preserve, recorded before anything
-- changes (`datagovuk migrate` runs it in its transaction, before the
-- archive's copy and the data migrations; `datagovuk verify` compares the
-- migrated database with it).
--
-- Tables in the schema datagovuk (outside public, so `ckan db check` stays
-- clean), written once: a later run of migrate keeps the first manifest.
--   manifest           one row: when, the schema version and the settings
--                      the data migrations will read, the data migrations
--                      then pending, whether the archive copies
--   manifest_dataset   every dataset: identity, state, title, notes (md5),
--                      owner, licence, its active extras (jsonb, NULL values
--                      kept as JSON null), whether a trap fix will touch it
--   manifest_resource  the active resources of every dataset: dataset,
--                      url, format, name, description (md5), position,
--                      whether it is an "Organogram viewer" link
--   manifest_group     every group and publisher, its active extras and
--                      active parents
--   manifest_user      every user: name, state, sysadmin, whether they ever
--                      published, whether spared from demotion
--   manifest_archive   the row counts of the tables the archive will copy
--
-- Any legacy CKAN schema: columns a version may lack are read through
-- to_jsonb(row), and the sources that moved (resource_group,
-- package_extra/group_extra) are chosen by the DO block below.
--
-- Settings (custom parameters, read with current_setting(name, true)):
--   datagovuk.manifest_archive_tables  the tables the archive will copy,
--                                      separated by commas (empty: none)
--   datagovuk.manifest_pending         the data migrations pending, by
--                                      commas
--   datagovuk.manifest_archive         'on' when the archive copies
--   datagovuk.keep_sysadmins, datagovuk.organogram_base_url,
--   datagovuk.site_user                as for 001_bytemark_to_govuk.sql
--
-- Set-based: one statement per table (a count per archived table).

CREATE SCHEMA IF NOT EXISTS datagovuk;

CREATE TABLE datagovuk.manifest (
    taken_at timestamptz NOT NULL DEFAULT now(),
    pending text[] NOT NULL,
    archive boolean NOT NULL,
    keep_sysadmins text[] NOT NULL,
    organogram_base_url text,
    site_user text
);

INSERT INTO datagovuk.manifest (pending, archive, keep_sysadmins,
                                organogram_base_url, site_user)
SELECT ARRAY(SELECT name FROM regexp_split_to_table(coalesce(
            current_setting('datagovuk.manifest_pending', true), ''),
            '[\s,]+') AS name WHERE name <> ''),
       coalesce(current_setting('datagovuk.manifest_archive', true), '') = 'on',
       ARRAY(SELECT name FROM regexp_split_to_table(coalesce(
            current_setting('datagovuk.keep_sysadmins', true), ''),
            '[\s,]+') AS name WHERE name <> ''),
       nullif(btrim(coalesce(
            current_setting('datagovuk.organogram_base_url', true), '')), ''),
       nullif(btrim(coalesce(
            current_setting('datagovuk.site_user', true), '')), '');

-- Where this schema version keeps resources' datasets and extras.
DO $sources$
BEGIN
    IF to_regclass('resource_group') IS NOT NULL AND EXISTS (
            SELECT 1 FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'resource'
              AND column_name = 'resource_group_id') THEN
        EXECUTE 'CREATE TEMP VIEW datagovuk_manifest_resources AS
            SELECT g.package_id, to_jsonb(r) AS r FROM resource r
            JOIN resource_group g ON g.id = r.resource_group_id';
    ELSE
        EXECUTE 'CREATE TEMP VIEW datagovuk_manifest_resources AS
            SELECT r.package_id, to_jsonb(r) AS r FROM resource r';
    END IF;
    IF to_regclass('package_extra') IS NOT NULL THEN
        EXECUTE 'CREATE TEMP VIEW datagovuk_manifest_package_extras AS
            SELECT package_id AS owner, jsonb_object_agg(key, value) AS extras,
                   bool_or(value IS NULL) AS has_null
            FROM package_extra WHERE state = ''active'' AND key IS NOT NULL
            GROUP BY package_id';
        EXECUTE 'CREATE TEMP VIEW datagovuk_manifest_null_keys AS
            SELECT DISTINCT package_id AS owner FROM package_extra
            WHERE state = ''active'' AND key IS NULL';
    ELSE
        EXECUTE 'CREATE TEMP VIEW datagovuk_manifest_package_extras AS
            SELECT id AS owner, extras, false AS has_null FROM package
            WHERE extras IS NOT NULL';
        EXECUTE 'CREATE TEMP VIEW datagovuk_manifest_null_keys AS
            SELECT NULL::text AS owner WHERE false';
    END IF;
    IF to_regclass('group_extra') IS NOT NULL THEN
        EXECUTE 'CREATE TEMP VIEW datagovuk_manifest_group_extras AS
            SELECT group_id AS owner, jsonb_object_agg(key, value) AS extras
            FROM group_extra WHERE state = ''active'' AND key IS NOT NULL
            GROUP BY group_id';
    ELSE
        EXECUTE 'CREATE TEMP VIEW datagovuk_manifest_group_extras AS
            SELECT id AS owner, extras FROM "group" WHERE extras IS NOT NULL';
    END IF;
END
$sources$;

CREATE TABLE datagovuk.manifest_dataset AS
SELECT p.id, p.name, j ->> 'type' AS type, j ->> 'state' AS state,
       p.title, md5(coalesce(p.notes, '')) AS notes_md5,
       j ->> 'owner_org' AS owner_org, p.license_id,
       coalesce(e.extras, '{}'::jsonb) AS extras,
       coalesce(e.has_null, false)
           OR EXISTS (SELECT 1 FROM datagovuk_manifest_null_keys n
                      WHERE n.owner = p.id) AS trap
FROM (SELECT p.*, to_jsonb(p) AS j FROM package p) p
LEFT JOIN datagovuk_manifest_package_extras e ON e.owner = p.id;
ALTER TABLE datagovuk.manifest_dataset ADD PRIMARY KEY (id);

CREATE TABLE datagovuk.manifest_resource AS
SELECT s.r ->> 'id' AS id, s.package_id, s.r ->> 'url' AS url,
       s.r ->> 'format' AS format, s.r ->> 'name' AS name,
       md5(coalesce(s.r ->> 'description', '')) AS description_md5,
       (s.r ->> 'description') = 'Organogram viewer' AS viewer,
       (s.r ->> 'position')::integer AS position
FROM datagovuk_manifest_resources s
JOIN package p ON p.id = s.package_id
WHERE s.r ->> 'state' = 'active';
ALTER TABLE datagovuk.manifest_resource ADD PRIMARY KEY (id);

CREATE TABLE datagovuk.manifest_group AS
SELECT g.id, g.name, g.title, j ->> 'state' AS state,
       coalesce((j ->> 'is_organization')::boolean, false) AS is_organization,
       coalesce(e.extras, '{}'::jsonb) AS extras,
       ARRAY(SELECT m.table_id FROM member m
             WHERE m.group_id = g.id AND m.table_name = 'group'
               AND m.capacity = 'parent' AND m.state = 'active'
             ORDER BY m.table_id) AS parents
FROM (SELECT g.*, to_jsonb(g) AS j FROM "group" g) g
LEFT JOIN datagovuk_manifest_group_extras e ON e.owner = g.id;
ALTER TABLE datagovuk.manifest_group ADD PRIMARY KEY (id);

CREATE TABLE datagovuk.manifest_user AS
SELECT u.id, u.name, j ->> 'state' AS state,
       coalesce(u.sysadmin, false) AS sysadmin,
       EXISTS (SELECT 1 FROM member m
               WHERE m.table_name = 'user' AND m.table_id = u.id
                 AND m.capacity IN ('admin', 'editor')) AS publisher,
       coalesce(u.name = ANY (f.keep_sysadmins) OR u.name = f.site_user,
                false) AS spared,
       false AS demoted_before
FROM (SELECT u.*, to_jsonb(u) AS j FROM "user" u) u, datagovuk.manifest f;
ALTER TABLE datagovuk.manifest_user ADD PRIMARY KEY (id);

-- A sysadmin an earlier run demoted (then rolled forward with
-- --skip-upgrade) is kept like one.
DO $demoted$
BEGIN
    IF to_regclass('datagovuk.demoted_sysadmins') IS NOT NULL THEN
        EXECUTE 'UPDATE datagovuk.manifest_user u SET demoted_before = true
            FROM datagovuk.demoted_sysadmins d WHERE d.user_id = u.id';
    END IF;
END
$demoted$;

CREATE TABLE datagovuk.manifest_archive (
    table_name text PRIMARY KEY,
    rows bigint NOT NULL
);
DO $archive$
DECLARE
    name text;
BEGIN
    FOR name IN SELECT t FROM regexp_split_to_table(coalesce(
            current_setting('datagovuk.manifest_archive_tables', true), ''),
            '[\s,]+') AS t WHERE t <> '' LOOP
        EXECUTE format('INSERT INTO datagovuk.manifest_archive '
                       'SELECT %L, count(*) FROM public.%I', name, name);
    END LOOP;
END
$archive$;

DROP VIEW datagovuk_manifest_resources;
DROP VIEW datagovuk_manifest_package_extras;
DROP VIEW datagovuk_manifest_null_keys;
DROP VIEW datagovuk_manifest_group_extras;
