-- 001_bytemark_to_govuk.sql
--
-- Turns the data of the old data.gov.uk site (a fork of CKAN 2.2, legacy
-- schema version 71, hosted at Bytemark) into data the new site accepts,
-- BEFORE CKAN's own schema upgrade runs.  On the 2.2 schema it:
--
--   step 1  removes tags (package_tag_revision, package_tag, tag);
--   step 2  deletes the package extras individual_resources,
--           additional_resources and timeseries_resources (with their
--           package_extra_revision rows), maps theme-primary titles to slugs
--           ('Business & Economy' -> 'business-and-economy', ...) and renames
--           the extra key schema -> schema-vocabulary;
--   step 3  marks resources described 'Organogram viewer' deleted;
--   step 4  rewrites the URLs of active organogram CSV resources from
--           https://data.gov.uk/sites/default/files/ to the base URL in the
--           setting datagovuk.organogram_base_url (skipped when it is empty);
--   step 5  deletes the users who never published (not a sysadmin and never
--           an admin/editor member of any group, whatever the state of that
--           membership or of the group), with every row that references
--           them (see step 5 for the list and for what is kept);
--   step 6  demotes every sysadmin except the users named in
--           datagovuk.keep_sysadmins and the new site's user, recording each
--           in datagovuk.demoted_sysadmins so they can be promoted again;
--   step 7  gives users named user_d<drupal uid> a valid, unique CKAN name
--           derived from their fullname (the Drupal user name), checked
--           against the names users hold at the end;
--   step 8  where the old harvest tables exist: renames harvest source types,
--           points dkan sources at their /data.json, and deletes the
--           duplicated source 2c798023-abac-4785-ad19-67bd5c1aed63 with its
--           jobs, objects, object extras and errors;
--   step 9  drops the continuity_id indexes production created ahead of
--           CKAN's migrations 079/080 (which would fail on them).
-- Each step reports the rows it changed as a NOTICE "step N: what: rows".
--
-- Settings (custom parameters, read with current_setting(name, true)):
--   datagovuk.keep_sysadmins       user names, as on the old site, separated by
--                                  commas or spaces, spared from demotion
--                                  (default: none)
--   datagovuk.organogram_base_url  new prefix of organogram CSV URLs
--                                  (default: empty, URLs left as they are)
--   datagovuk.site_user            the new site's ckan.site_id: that user is
--                                  never deleted, demoted or renamed, and no
--                                  renamed user may take its name
--
-- Running it with psql alone (stop at the first error, one transaction; the
-- file itself contains no BEGIN/COMMIT so that a caller can wrap it):
--
--   psql -v ON_ERROR_STOP=1 --single-transaction \
--        -c "SET datagovuk.keep_sysadmins = 'user_d845,support-team'" \
--        -c "SET datagovuk.organogram_base_url = 'https://s3-eu-west-1.amazonaws.com/datagovuk-production-ckan-organogram/'" \
--        -c "SET datagovuk.site_user = 'dgu'" \
--        -f migrations/001_bytemark_to_govuk.sql ckan
--
-- or pass the settings in the environment:
--
--   PGOPTIONS='-c datagovuk.keep_sysadmins=user_d845,support-team -c datagovuk.site_user=dgu' \
--   psql -v ON_ERROR_STOP=1 --single-transaction -f migrations/001_bytemark_to_govuk.sql ckan
--
-- `ckan datagovuk migrate` runs this file for you, with the settings taken
-- from the CKAN config (ckanext.datagovuk.keep_sysadmins,
-- ckanext.datagovuk.organogram_base_url, ckan.site_id), and records it in
-- datagovuk.applied_migrations.
--
-- It is idempotent: running it again on its own result changes nothing.
-- It is set-based throughout (no per-row loops) so that it scales to the
-- real site (about 50,000 datasets, millions of revision rows).

-- Step 0: bookkeeping outside the public schema (so `ckan db check` stays
-- clean) and helper indexes for the foreign-key checks of the deletes below.
CREATE SCHEMA IF NOT EXISTS datagovuk;

CREATE TABLE IF NOT EXISTS datagovuk.demoted_sysadmins (
    user_id text PRIMARY KEY,
    user_name text NOT NULL,
    demoted_at timestamptz NOT NULL DEFAULT now(),
    migration text NOT NULL
);

-- Deleting a package_extra or member row makes PostgreSQL look for revision
-- rows still pointing at it (continuity_id); without an index that is a scan
-- of the whole revision table per deleted row.  Dropped again at the end.
CREATE INDEX IF NOT EXISTS datagovuk_001_package_extra_revision_continuity
    ON package_extra_revision (continuity_id);
CREATE INDEX IF NOT EXISTS datagovuk_001_member_revision_continuity
    ON member_revision (continuity_id);
CREATE INDEX IF NOT EXISTS datagovuk_001_user_following_user_object
    ON user_following_user (object_id);
CREATE INDEX IF NOT EXISTS datagovuk_001_authorization_group_user_user
    ON authorization_group_user (user_id);


-- Step 1: tags are a deprecated feature on the new site.  TRUNCATE rather
-- than DELETE: it is instant at any size and checks no foreign key row by row.
DO $step1$
DECLARE
    tag_links bigint;
    tag_link_revisions bigint;
    tags bigint;
BEGIN
    SELECT count(*) INTO tag_link_revisions FROM package_tag_revision;
    SELECT count(*) INTO tag_links FROM package_tag;
    SELECT count(*) INTO tags FROM tag;
    IF tag_link_revisions + tag_links + tags > 0 THEN
        TRUNCATE package_tag_revision, package_tag, tag;
    END IF;
    RAISE NOTICE 'step 1: package_tag_revision rows deleted: %', tag_link_revisions;
    RAISE NOTICE 'step 1: package_tag rows deleted: %', tag_links;
    RAISE NOTICE 'step 1: tag rows deleted: %', tags;
END
$step1$;


-- Step 2: package extras.
DO $step2$
DECLARE
    changed bigint;
BEGIN
    CREATE TEMP TABLE datagovuk_obsolete_extras ON COMMIT DROP AS
        SELECT id FROM package_extra
        WHERE key IN ('individual_resources', 'additional_resources',
                      'timeseries_resources');
    ALTER TABLE datagovuk_obsolete_extras ADD PRIMARY KEY (id);
    ANALYZE datagovuk_obsolete_extras;

    DELETE FROM package_extra_revision r
        USING datagovuk_obsolete_extras o WHERE r.continuity_id = o.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 2: package_extra_revision rows of resource-list extras deleted: %', changed;

    DELETE FROM package_extra e
        USING datagovuk_obsolete_extras o WHERE e.id = o.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 2: package_extra resource-list extras deleted: %', changed;
    DROP TABLE datagovuk_obsolete_extras;

    UPDATE package_extra e SET value = theme.slug
    FROM (VALUES ('Business & Economy', 'business-and-economy'),
                 ('Environment', 'environment'),
                 ('Mapping', 'mapping'),
                 ('Crime & Justice', 'crime-and-justice'),
                 ('Government', 'government'),
                 ('Society', 'society'),
                 ('Defence', 'defence'),
                 ('Government Spending', 'government-spending'),
                 ('Towns & Cities', 'towns-and-cities'),
                 ('Education', 'education'),
                 ('Health', 'health'),
                 ('Transport', 'transport')) AS theme (title, slug)
    WHERE e.key = 'theme-primary' AND e.value = theme.title;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 2: theme-primary values mapped to slugs: %', changed;

    UPDATE package_extra SET key = 'schema-vocabulary' WHERE key = 'schema';
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 2: schema extras renamed to schema-vocabulary: %', changed;
END
$step2$;


-- Step 3: the organogram viewer links point at a tool the new site lacks.
DO $step3$
DECLARE
    changed bigint;
BEGIN
    UPDATE resource SET state = 'deleted'
    WHERE description = 'Organogram viewer'
      AND state IS DISTINCT FROM 'deleted';
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 3: Organogram viewer resources marked deleted: %', changed;
END
$step3$;


-- Step 4: organogram CSVs moved off the old Drupal file store.  The dataset
-- of a resource is reached through resource_group in the 2.2 schema.
DO $step4$
DECLARE
    old_prefix constant text := 'https://data.gov.uk/sites/default/files/';
    new_prefix text := nullif(btrim(coalesce(
        current_setting('datagovuk.organogram_base_url', true), '')), '');
    changed bigint;
BEGIN
    IF new_prefix IS NULL THEN
        RAISE NOTICE 'step 4: organogram CSV URLs rewritten (skipped: datagovuk.organogram_base_url is not set): 0';
        RETURN;
    END IF;
    new_prefix := rtrim(new_prefix, '/') || '/';

    UPDATE resource r
    SET url = new_prefix || substr(r.url, length(old_prefix) + 1)
    FROM resource_group g
    WHERE r.resource_group_id = g.id
      AND r.state = 'active'
      AND left(r.url, length(old_prefix)) = old_prefix
      AND left(r.url, length(new_prefix)) <> new_prefix
      AND (lower(r.format) = 'csv' OR lower(r.url) LIKE '%.csv')
      AND EXISTS (
          SELECT 1 FROM package_extra e
          WHERE e.package_id = g.package_id
            AND e.key = 'schema-vocabulary'
            AND coalesce(e.state, 'active') = 'active'
            AND (strpos(e.value, 'd3c0b23f-6979-45e4-88ed-d2ab59b005d0') > 0
                 OR strpos(e.value, '538b857a-64ba-490e-8440-0e32094a28a7') > 0));
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 4: organogram CSV URLs rewritten: %', changed;
END
$step4$;


-- Step 5: delete the users who never published.
--
-- A user is kept when they are a sysadmin, the new site's user, a sysadmin
-- demoted by an earlier run of this file (so a second run does not delete
-- them), or have EVER been an admin or editor member of any group: every
-- such member row counts, whatever the state of the membership, of the
-- group or the group's type, as in the original 2018 script.  Deleting a
-- user cannot be undone; keeping one who once published costs nothing.
--
-- Deleted with them: their follower rows (both directions), dashboard,
-- ratings, authorization group memberships, old authorization rows
-- (user_object_role and the package_role/group_role/system_role/
-- authorization_group_role rows hanging off it), their group memberships
-- (member rows and those rows' member_revision history) and the activities
-- ABOUT them (object_id = the user: they carry the user's own details).
-- Kept: activities they performed on datasets and groups.  activity.user_id
-- has no foreign key, and CKAN deliberately keeps such rows ("so actions can
-- be properly displayed even if the user is deleted"): deleting them would
-- erase the history of datasets that stay.
-- Cleared: package.creator_user_id and, where the harvest tables exist,
-- harvest_source.user_id (set NULL; the datasets and sources stay).  CKAN
-- looks creators up (the stats plugin's top creators page expects each
-- non-NULL creator to be a user), so a dangling id is not harmless there.
DO $step5$
DECLARE
    site_user text := nullif(btrim(coalesce(
        current_setting('datagovuk.site_user', true), '')), '');
    changed bigint;
BEGIN
    CREATE TEMP TABLE datagovuk_doomed_users ON COMMIT DROP AS
        SELECT u.id FROM "user" u
        WHERE NOT coalesce(u.sysadmin, false)
          AND u.name IS DISTINCT FROM site_user
          AND NOT EXISTS (
              SELECT 1 FROM member m
              WHERE m.table_name = 'user' AND m.table_id = u.id
                AND m.capacity IN ('admin', 'editor'))
          AND NOT EXISTS (
              SELECT 1 FROM datagovuk.demoted_sysadmins d WHERE d.user_id = u.id);
    ALTER TABLE datagovuk_doomed_users ADD PRIMARY KEY (id);
    ANALYZE datagovuk_doomed_users;

    CREATE TEMP TABLE datagovuk_doomed_roles ON COMMIT DROP AS
        SELECT r.id FROM user_object_role r
        JOIN datagovuk_doomed_users d ON d.id = r.user_id;
    ALTER TABLE datagovuk_doomed_roles ADD PRIMARY KEY (id);
    ANALYZE datagovuk_doomed_roles;

    CREATE TEMP TABLE datagovuk_doomed_members ON COMMIT DROP AS
        SELECT m.id FROM member m
        JOIN datagovuk_doomed_users d ON d.id = m.table_id
        WHERE m.table_name = 'user';
    ALTER TABLE datagovuk_doomed_members ADD PRIMARY KEY (id);
    ANALYZE datagovuk_doomed_members;

    DELETE FROM activity_detail ad USING activity a, datagovuk_doomed_users d
        WHERE ad.activity_id = a.id AND a.object_id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: activity_detail rows about deleted users deleted: %', changed;
    DELETE FROM activity a USING datagovuk_doomed_users d WHERE a.object_id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: activity rows about deleted users deleted: %', changed;

    -- two statements: a join on "follower OR followed" cannot be hashed
    DELETE FROM user_following_user f USING datagovuk_doomed_users d
        WHERE f.follower_id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: user_following_user rows of followers deleted: %', changed;
    DELETE FROM user_following_user f USING datagovuk_doomed_users d
        WHERE f.object_id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: user_following_user rows of followed users deleted: %', changed;
    DELETE FROM user_following_dataset f USING datagovuk_doomed_users d
        WHERE f.follower_id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: user_following_dataset rows deleted: %', changed;
    DELETE FROM user_following_group f USING datagovuk_doomed_users d
        WHERE f.follower_id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: user_following_group rows deleted: %', changed;
    DELETE FROM dashboard x USING datagovuk_doomed_users d WHERE x.user_id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: dashboard rows deleted: %', changed;
    DELETE FROM rating x USING datagovuk_doomed_users d WHERE x.user_id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: rating rows deleted: %', changed;
    DELETE FROM authorization_group_user x USING datagovuk_doomed_users d
        WHERE x.user_id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: authorization_group_user rows deleted: %', changed;

    DELETE FROM package_role x USING datagovuk_doomed_roles r
        WHERE x.user_object_role_id = r.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: package_role rows deleted: %', changed;
    DELETE FROM group_role x USING datagovuk_doomed_roles r
        WHERE x.user_object_role_id = r.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: group_role rows deleted: %', changed;
    DELETE FROM system_role x USING datagovuk_doomed_roles r
        WHERE x.user_object_role_id = r.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: system_role rows deleted: %', changed;
    DELETE FROM authorization_group_role x USING datagovuk_doomed_roles r
        WHERE x.user_object_role_id = r.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: authorization_group_role rows deleted: %', changed;
    DELETE FROM user_object_role x USING datagovuk_doomed_roles r
        WHERE x.id = r.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: user_object_role rows deleted: %', changed;

    DELETE FROM member_revision x USING datagovuk_doomed_members m
        WHERE x.continuity_id = m.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: member_revision rows of deleted users deleted: %', changed;
    DELETE FROM member x USING datagovuk_doomed_members m WHERE x.id = m.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: member rows of deleted users deleted: %', changed;

    UPDATE package p SET creator_user_id = NULL
        FROM datagovuk_doomed_users d WHERE p.creator_user_id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: package.creator_user_id cleared: %', changed;

    IF to_regclass('harvest_source') IS NOT NULL AND EXISTS (
            SELECT 1 FROM information_schema.columns
            WHERE table_schema = current_schema()
              AND table_name = 'harvest_source' AND column_name = 'user_id') THEN
        UPDATE harvest_source s SET user_id = NULL
            FROM datagovuk_doomed_users d WHERE s.user_id = d.id;
        GET DIAGNOSTICS changed = ROW_COUNT;
        RAISE NOTICE 'step 5: harvest_source.user_id cleared: %', changed;
    END IF;

    DELETE FROM "user" u USING datagovuk_doomed_users d WHERE u.id = d.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 5: non-publishing users deleted: %', changed;

    DROP TABLE datagovuk_doomed_members;
    DROP TABLE datagovuk_doomed_roles;
    DROP TABLE datagovuk_doomed_users;
END
$step5$;


-- Step 6: demote the sysadmins; the record lets `datagovuk promote
-- --demoted` bring them back once the new site is checked.
DO $step6$
DECLARE
    site_user text := nullif(btrim(coalesce(
        current_setting('datagovuk.site_user', true), '')), '');
    kept text[] := ARRAY(
        SELECT name FROM regexp_split_to_table(coalesce(
            current_setting('datagovuk.keep_sysadmins', true), ''), '[\s,]+') AS name
        WHERE name <> '');
    changed bigint;
BEGIN
    INSERT INTO datagovuk.demoted_sysadmins (user_id, user_name, migration)
        SELECT id, name, '001_bytemark_to_govuk.sql' FROM "user"
        WHERE sysadmin AND name <> ALL (kept) AND name IS DISTINCT FROM site_user
        ON CONFLICT (user_id) DO NOTHING;

    UPDATE "user" SET sysadmin = false
        WHERE sysadmin AND name <> ALL (kept) AND name IS DISTINCT FROM site_user;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 6: sysadmins demoted: %', changed;

    IF site_user IS NOT NULL AND EXISTS (
            SELECT 1 FROM "user" WHERE name = site_user AND NOT coalesce(sysadmin, false)) THEN
        RAISE WARNING 'step 6: the site user % exists but is not a sysadmin; CKAN needs it to be one', site_user;
    END IF;
END
$step6$;


-- Step 7: user_d<uid> users get a CKAN 2.12 user name from their fullname
-- (the Drupal user name): lowercase ASCII letters, digits, - and _, 3 to 100
-- characters (CKAN's name_validator allows 2..100, but User.VALID_NAME, used
-- for profile links, needs at least 3), not 'new', 'edit' or 'search'.
-- Candidates, first that is free wins:
--   1. the derived name, for the user with the smallest id among those
--      deriving it;
--   2. derived name + '-' + Drupal uid (unique: the uid is the last part);
--   3. the old name, kept (also when nothing valid can be derived).
-- Names are checked against the names users hold AT THE END, not at the
-- start: a user_d name that its owner gives up is free for another (an old
-- user_d109 whose fullname is user_d110 becomes user_d110 when user_d110
-- takes a name from its own fullname).  A name is taken when a user who is
-- not a user_d user holds it (case-insensitively), any user has it as id,
-- it is the new site user's name, or a user_d user keeps it (candidate 3).
-- Who keeps their old name depends on who is left without a free name, so
-- the choice is repeated until nobody more has to keep theirs: the result
-- depends on the data only (ties go to the smallest id), never on the order
-- of rows.  A second run derives the same names, which the users then hold,
-- and changes nothing.
DO $step7$
DECLARE
    site_user text := nullif(btrim(coalesce(
        current_setting('datagovuk.site_user', true), '')), '');
    changed bigint;
BEGIN
    CREATE TEMP TABLE datagovuk_drupal_users ON COMMIT DROP AS
    WITH drupal_users AS (
        SELECT id, name, substring(name FROM '^user_d([0-9]+)$') AS uid,
               fullname
        FROM "user"
        WHERE name ~ '^user_d[0-9]+$' AND name IS DISTINCT FROM site_user
    ), derived AS (
        SELECT id, name, uid,
               btrim(left(btrim(regexp_replace(regexp_replace(lower(translate(
                   btrim(coalesce(fullname, '')),
                   'ÀÁÂÃÄÅĀĂĄÇĆČĎÈÉÊËĒĖĘĚÌÍÎÏĪĮŁÑŃŇÒÓÔÕÖØŌŐŔŘŚŠŞŤŢÙÚÛÜŪŮŰŲÝŸŹŻŽàáâãäåāăąçćčďèéêëēėęěìíîïīįłñńňòóôõöøōőŕřśšşťţùúûüūůűųýÿźżž',
                   'AAAAAAAAACCCDEEEEEEEEIIIIIILNNNOOOOOOOORRSSSTTUUUUUUUUYYZZZaaaaaaaaacccdeeeeeeeeiiiiiilnnnoooooooorrsssttuuuuuuuuyyzzz')),
                   '[^a-z0-9_-]+', '-', 'g'), '-{2,}', '-', 'g'), '-_'), 100), '-_') AS base
        FROM drupal_users
    )
    SELECT id, name, uid, base,
           -- candidate 3 from the start when nothing valid can be derived
           (length(base) < 3 OR base IN ('new', 'edit', 'search')) AS keeps_name
    FROM derived;
    ALTER TABLE datagovuk_drupal_users ADD PRIMARY KEY (id);
    ANALYZE datagovuk_drupal_users;

    CREATE TEMP TABLE datagovuk_fixed_names ON COMMIT DROP AS
        SELECT lower(u.name) AS name FROM "user" u
        WHERE NOT EXISTS (SELECT 1 FROM datagovuk_drupal_users d WHERE d.id = u.id)
        UNION SELECT lower(id) FROM "user"
        UNION SELECT lower(site_user) WHERE site_user IS NOT NULL;
    ALTER TABLE datagovuk_fixed_names ADD PRIMARY KEY (name);
    ANALYZE datagovuk_fixed_names;

    CREATE TEMP TABLE datagovuk_renames (id text PRIMARY KEY, new_name text)
        ON COMMIT DROP;
    LOOP
        TRUNCATE datagovuk_renames;
        INSERT INTO datagovuk_renames
        WITH taken AS (
            SELECT name FROM datagovuk_fixed_names
            UNION SELECT name FROM datagovuk_drupal_users WHERE keeps_name
        ), valid AS (
            SELECT id, uid, base,
                   row_number() OVER (PARTITION BY base ORDER BY id) AS rank
            FROM datagovuk_drupal_users WHERE NOT keeps_name
        ), first_choice AS (
            SELECT v.id, v.base AS new_name FROM valid v
            WHERE v.rank = 1
              AND NOT EXISTS (SELECT 1 FROM taken t WHERE t.name = v.base)
        ), second_choice AS (
            SELECT v.id, rtrim(left(v.base, 99 - length(v.uid)), '-_') || '-' || v.uid AS new_name
            FROM valid v
            WHERE NOT EXISTS (SELECT 1 FROM first_choice f WHERE f.id = v.id)
        )
        SELECT id, new_name FROM first_choice
        UNION ALL
        SELECT s.id, s.new_name FROM second_choice s
        WHERE NOT EXISTS (SELECT 1 FROM taken t WHERE t.name = s.new_name)
          AND NOT EXISTS (SELECT 1 FROM first_choice f WHERE f.new_name = s.new_name);

        -- Those left without a free name keep theirs, which may take a
        -- name another user chose: choose again.
        UPDATE datagovuk_drupal_users d SET keeps_name = true
        WHERE NOT d.keeps_name
          AND NOT EXISTS (SELECT 1 FROM datagovuk_renames r WHERE r.id = d.id);
        EXIT WHEN NOT FOUND;
    END LOOP;
    DELETE FROM datagovuk_renames r USING datagovuk_drupal_users d
        WHERE r.id = d.id AND r.new_name = d.name;
    ANALYZE datagovuk_renames;

    -- Through a name nobody holds first: a user may take the old name of
    -- another renamed in the same statement, and "user".name is unique.
    UPDATE "user" u SET name = 'datagovuk-renaming-' || u.id
        FROM datagovuk_renames r WHERE u.id = r.id;
    UPDATE "user" u SET name = r.new_name
        FROM datagovuk_renames r WHERE u.id = r.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 7: user_d users renamed from their fullname: %', changed;

    SELECT count(*) INTO changed FROM datagovuk_drupal_users d
        WHERE NOT EXISTS (SELECT 1 FROM datagovuk_renames r WHERE r.id = d.id);
    RAISE NOTICE 'step 7: user_d users keeping their name (no valid or free name from fullname): %', changed;

    -- The demotion record carries the name the user logs in with now.
    UPDATE datagovuk.demoted_sysadmins d SET user_name = u.name
        FROM "user" u
        WHERE d.user_id = u.id AND d.user_name <> u.name
          AND d.migration = '001_bytemark_to_govuk.sql';

    DROP TABLE datagovuk_renames;
    DROP TABLE datagovuk_fixed_names;
    DROP TABLE datagovuk_drupal_users;
END
$step7$;


-- Step 8: harvest sources, only where the old harvest tables exist.
DO $step8$
DECLARE
    duplicate constant text := '2c798023-abac-4785-ad19-67bd5c1aed63';
    changed bigint;
    objects_have_source boolean;
BEGIN
    IF to_regclass('harvest_source') IS NULL THEN
        RAISE NOTICE 'step 8: harvest sources (skipped: no harvest tables): 0';
        RETURN;
    END IF;

    UPDATE harvest_source s SET type = renamed.new_type
    FROM (VALUES ('gemini-single', 'single-doc'),
                 ('gemini-csw', 'csw'),
                 ('gemini-waf', 'waf'),
                 ('data_json', 'dcat_json')) AS renamed (old_type, new_type)
    WHERE s.type = renamed.old_type;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 8: harvest source types renamed: %', changed;

    UPDATE harvest_source
    SET type = 'dcat_json',
        url = CASE WHEN rtrim(url, '/') LIKE '%/data.json' THEN rtrim(url, '/')
                   ELSE rtrim(url, '/') || '/data.json' END
    WHERE type = 'dkan';
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 8: dkan harvest sources moved to dcat_json: %', changed;

    IF NOT EXISTS (SELECT 1 FROM harvest_source WHERE id = duplicate) THEN
        RAISE NOTICE 'step 8: duplicate harvest source deleted: 0';
        RETURN;
    END IF;

    CREATE TEMP TABLE datagovuk_duplicate_jobs (id text PRIMARY KEY) ON COMMIT DROP;
    CREATE TEMP TABLE datagovuk_duplicate_objects (id text PRIMARY KEY) ON COMMIT DROP;

    IF to_regclass('harvest_job') IS NOT NULL THEN
        INSERT INTO datagovuk_duplicate_jobs
            SELECT id FROM harvest_job WHERE source_id = duplicate;
    END IF;
    IF to_regclass('harvest_object') IS NOT NULL THEN
        objects_have_source := EXISTS (
            SELECT 1 FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'harvest_object'
              AND column_name = 'harvest_source_id');
        INSERT INTO datagovuk_duplicate_objects
            SELECT o.id FROM harvest_object o
            JOIN datagovuk_duplicate_jobs j ON j.id = o.harvest_job_id;
        IF objects_have_source THEN
            INSERT INTO datagovuk_duplicate_objects
                SELECT id FROM harvest_object WHERE harvest_source_id = duplicate
                ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    ANALYZE datagovuk_duplicate_jobs;
    ANALYZE datagovuk_duplicate_objects;

    -- Each deleted job or object makes PostgreSQL look for rows still
    -- pointing at it; these columns have no index of their own, and the
    -- object tables are the largest harvest tables.  Dropped below.
    IF to_regclass('harvest_object_extra') IS NOT NULL THEN
        CREATE INDEX IF NOT EXISTS datagovuk_001_harvest_object_extra_object
            ON harvest_object_extra (harvest_object_id);
    END IF;
    IF to_regclass('harvest_object_error') IS NOT NULL THEN
        CREATE INDEX IF NOT EXISTS datagovuk_001_harvest_object_error_object
            ON harvest_object_error (harvest_object_id);
    END IF;
    IF to_regclass('harvest_gather_error') IS NOT NULL THEN
        CREATE INDEX IF NOT EXISTS datagovuk_001_harvest_gather_error_job
            ON harvest_gather_error (harvest_job_id);
    END IF;
    IF to_regclass('harvest_object') IS NOT NULL THEN
        CREATE INDEX IF NOT EXISTS datagovuk_001_harvest_object_job
            ON harvest_object (harvest_job_id);
        IF objects_have_source THEN
            CREATE INDEX IF NOT EXISTS datagovuk_001_harvest_object_source
                ON harvest_object (harvest_source_id);
        END IF;
    END IF;

    IF to_regclass('harvest_object_extra') IS NOT NULL THEN
        DELETE FROM harvest_object_extra x USING datagovuk_duplicate_objects o
            WHERE x.harvest_object_id = o.id;
        GET DIAGNOSTICS changed = ROW_COUNT;
        RAISE NOTICE 'step 8: harvest_object_extra rows of the duplicate source deleted: %', changed;
    END IF;
    IF to_regclass('harvest_object_error') IS NOT NULL THEN
        DELETE FROM harvest_object_error x USING datagovuk_duplicate_objects o
            WHERE x.harvest_object_id = o.id;
        GET DIAGNOSTICS changed = ROW_COUNT;
        RAISE NOTICE 'step 8: harvest_object_error rows of the duplicate source deleted: %', changed;
    END IF;
    IF to_regclass('harvest_gather_error') IS NOT NULL THEN
        DELETE FROM harvest_gather_error x USING datagovuk_duplicate_jobs j
            WHERE x.harvest_job_id = j.id;
        GET DIAGNOSTICS changed = ROW_COUNT;
        RAISE NOTICE 'step 8: harvest_gather_error rows of the duplicate source deleted: %', changed;
    END IF;
    IF to_regclass('harvest_object') IS NOT NULL THEN
        DELETE FROM harvest_object x USING datagovuk_duplicate_objects o
            WHERE x.id = o.id;
        GET DIAGNOSTICS changed = ROW_COUNT;
        RAISE NOTICE 'step 8: harvest_object rows of the duplicate source deleted: %', changed;
    END IF;
    IF to_regclass('harvest_job') IS NOT NULL THEN
        DELETE FROM harvest_job x USING datagovuk_duplicate_jobs j WHERE x.id = j.id;
        GET DIAGNOSTICS changed = ROW_COUNT;
        RAISE NOTICE 'step 8: harvest_job rows of the duplicate source deleted: %', changed;
    END IF;
    DELETE FROM harvest_source WHERE id = duplicate;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RAISE NOTICE 'step 8: duplicate harvest source deleted: %', changed;

    DROP TABLE datagovuk_duplicate_objects;
    DROP TABLE datagovuk_duplicate_jobs;
    DROP INDEX IF EXISTS datagovuk_001_harvest_object_extra_object;
    DROP INDEX IF EXISTS datagovuk_001_harvest_object_error_object;
    DROP INDEX IF EXISTS datagovuk_001_harvest_gather_error_job;
    DROP INDEX IF EXISTS datagovuk_001_harvest_object_job;
    DROP INDEX IF EXISTS datagovuk_001_harvest_object_source;
END
$step8$;


-- Step 9: CKAN's migrations 079 and 080 create these indexes and fail if
-- they exist; production created them early.  Our helper indexes go too.
DO $step9$
DECLARE
    index_name text;
    dropped bigint := 0;
BEGIN
    FOREACH index_name IN ARRAY ARRAY[
            'idx_resource_continuity_id', 'idx_member_continuity_id',
            'idx_package_continuity_id', 'idx_package_extra_continuity_id',
            'idx_package_tag_continuity_id'] LOOP
        IF to_regclass(quote_ident(index_name)) IS NOT NULL THEN
            EXECUTE format('DROP INDEX %I', index_name);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RAISE NOTICE 'step 9: continuity indexes dropped: %', dropped;
END
$step9$;

DROP INDEX IF EXISTS datagovuk_001_package_extra_revision_continuity;
DROP INDEX IF EXISTS datagovuk_001_member_revision_continuity;
DROP INDEX IF EXISTS datagovuk_001_user_following_user_object;
DROP INDEX IF EXISTS datagovuk_001_authorization_group_user_user;
