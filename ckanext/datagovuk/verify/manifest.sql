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
-- Any legacy CKAN schema: a column a version lacks reads as NULL, and the
-- sources that moved (resource_group, package_extra/group_extra) are chosen
-- by the DO block below.
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
-- Set-based: one statement per table (a count per archived table), joins
-- rather than a subquery per row.

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

-- Where this schema version keeps resources' datasets and extras, and
-- which of the columns read below it has (NULL for those it lacks).
CREATE FUNCTION pg_temp.datagovuk_columns(source text, wanted text[])
RETURNS text LANGUAGE sql STABLE AS $columns$
    SELECT string_agg(CASE WHEN EXISTS (
               SELECT 1 FROM pg_attribute
               WHERE attrelid = to_regclass(quote_ident(source))
                 AND attname = c AND NOT attisdropped)
           THEN 't.' || quote_ident(c) ELSE 'NULL' END
           || ' AS ' || quote_ident(c), ', ' ORDER BY n)
    FROM unnest(wanted) WITH ORDINALITY AS w (c, n)
$columns$;

DO $sources$
BEGIN
    EXECUTE format('CREATE TEMP VIEW datagovuk_manifest_packages AS '
                   'SELECT %s FROM package t', pg_temp.datagovuk_columns(
        'package', ARRAY['id', 'name', 'type', 'state', 'title', 'notes',
                         'owner_org', 'license_id']));
    EXECUTE format('CREATE TEMP VIEW datagovuk_manifest_groups AS '
                   'SELECT %s FROM "group" t', pg_temp.datagovuk_columns(
        'group', ARRAY['id', 'name', 'title', 'state', 'is_organization']));
    EXECUTE format('CREATE TEMP VIEW datagovuk_manifest_users AS '
                   'SELECT %s FROM "user" t', pg_temp.datagovuk_columns(
        'user', ARRAY['id', 'name', 'state', 'sysadmin']));
    IF to_regclass('resource_group') IS NOT NULL AND EXISTS (
            SELECT 1 FROM pg_attribute
            WHERE attrelid = to_regclass('resource')
              AND attname = 'resource_group_id' AND NOT attisdropped) THEN
        EXECUTE format('CREATE TEMP VIEW datagovuk_manifest_resources AS '
                       'SELECT g.package_id, %s FROM resource t '
                       'JOIN resource_group g ON g.id = t.resource_group_id',
                       pg_temp.datagovuk_columns('resource', ARRAY[
                           'id', 'url', 'format', 'name', 'description',
                           'position', 'state']));
    ELSE
        EXECUTE format('CREATE TEMP VIEW datagovuk_manifest_resources AS '
                       'SELECT t.package_id, %s FROM resource t',
                       pg_temp.datagovuk_columns('resource', ARRAY[
                           'id', 'url', 'format', 'name', 'description',
                           'position', 'state']));
    END IF;
    IF to_regclass('package_extra') IS NOT NULL THEN
        EXECUTE 'CREATE TEMP VIEW datagovuk_manifest_package_extras AS
            SELECT package_id AS owner,
                   jsonb_object_agg(key, value) FILTER (WHERE key IS NOT NULL)
                       AS extras,
                   bool_or(key IS NULL OR value IS NULL) AS has_null
            FROM package_extra WHERE state = ''active''
            GROUP BY package_id';
    ELSE
        EXECUTE 'CREATE TEMP VIEW datagovuk_manifest_package_extras AS
            SELECT id AS owner, extras, false AS has_null FROM package
            WHERE extras IS NOT NULL';
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
SELECT p.id, p.name, p.type, p.state, p.title,
       md5(coalesce(p.notes, '')) AS notes_md5, p.owner_org, p.license_id,
       coalesce(e.extras, '{}'::jsonb) AS extras,
       coalesce(e.has_null, false) AS trap
FROM datagovuk_manifest_packages p
LEFT JOIN datagovuk_manifest_package_extras e ON e.owner = p.id;
ALTER TABLE datagovuk.manifest_dataset ADD PRIMARY KEY (id);

CREATE TABLE datagovuk.manifest_resource AS
SELECT r.id, r.package_id, r.url, r.format, r.name,
       md5(coalesce(r.description, '')) AS description_md5,
       coalesce(r.description = 'Organogram viewer', false) AS viewer,
       r.position
FROM datagovuk_manifest_resources r
JOIN package p ON p.id = r.package_id
WHERE r.state = 'active';
ALTER TABLE datagovuk.manifest_resource ADD PRIMARY KEY (id);
-- verify's API sample reads the resources of a chunk of datasets at a time.
CREATE INDEX manifest_resource_package_id
    ON datagovuk.manifest_resource (package_id);

-- Joins, not a subquery per row: the member table has a row per dataset.
CREATE TABLE datagovuk.manifest_group AS
SELECT g.id, g.name, g.title, g.state,
       coalesce(g.is_organization, false) AS is_organization,
       coalesce(e.extras, '{}'::jsonb) AS extras,
       coalesce(h.parents, '{}') AS parents
FROM datagovuk_manifest_groups g
LEFT JOIN datagovuk_manifest_group_extras e ON e.owner = g.id
LEFT JOIN (SELECT group_id, array_agg(table_id ORDER BY table_id) AS parents
           FROM member WHERE table_name = 'group' AND capacity = 'parent'
             AND state = 'active' GROUP BY group_id) h ON h.group_id = g.id;
ALTER TABLE datagovuk.manifest_group ADD PRIMARY KEY (id);

CREATE TABLE datagovuk.manifest_user AS
SELECT u.id, u.name, u.state, coalesce(u.sysadmin, false) AS sysadmin,
       p.table_id IS NOT NULL AS publisher,
       coalesce(u.name = ANY (f.keep_sysadmins) OR u.name = f.site_user,
                false) AS spared,
       false AS demoted_before
FROM datagovuk_manifest_users u
CROSS JOIN datagovuk.manifest f
LEFT JOIN (SELECT DISTINCT table_id FROM member
           WHERE table_name = 'user' AND capacity IN ('admin', 'editor')) p
    ON p.table_id = u.id;
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

DROP VIEW datagovuk_manifest_packages, datagovuk_manifest_groups,
    datagovuk_manifest_users, datagovuk_manifest_resources,
    datagovuk_manifest_package_extras, datagovuk_manifest_group_extras;
DROP FUNCTION pg_temp.datagovuk_columns(text, text[]);
