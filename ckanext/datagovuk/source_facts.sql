-- What `migrate --from` must know about the old site's database before it
-- transfers anything (judged by decisions.py): its public tables, CKAN's
-- legacy version (migrate_version), its alembic revision, the data
-- migrations its ledger records, and the active users whose emails clash
-- ignoring case, each marked with whether data migration 001 keeps them.
--
-- Run by psql on the old host, in the same ssh invocation as the pg_dump
-- version probe (transfer/remote_version.sh), or here on the staging
-- database when the source is a dump file:
--
--   psql -X -w -q -A -t -z -0 -v ON_ERROR_STOP=1 -v site_user=NAME -f THIS
--
-- Read only: one read-only transaction of SELECTs, no temporary objects.
-- Works on PostgreSQL 9.2 and later.  Each row is (kind, value) with NUL
-- separators; a table that may be missing is read through query_to_xml,
-- which runs its query only when the row is selected.
START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

SELECT 'table', c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
                  AND d.classid = 'pg_class'::regclass AND d.deptype = 'e')
ORDER BY c.relname;

SELECT 'migrate_version', query_to_xml(
    'SELECT repository_id, repository_path, version
     FROM public.migrate_version ORDER BY repository_id', true, false, '')
WHERE EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public'
              AND tablename = 'migrate_version');

SELECT 'alembic_version', query_to_xml(
    'SELECT version_num FROM public.alembic_version', true, false, '')
WHERE EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public'
              AND tablename = 'alembic_version');

SELECT 'applied', query_to_xml(
    'SELECT filename FROM datagovuk.applied_migrations', true, false, '')
WHERE EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'datagovuk'
              AND tablename = 'applied_migrations');

-- "kept": who data migration 001 (step 5) keeps: a sysadmin, the new
-- site's user, a sysadmin an earlier run demoted, or anyone who was ever
-- an admin or editor member of a group.  Keep it in step with 001.
SELECT 'email_clash_users', query_to_xml(format($query$
    SELECT lower(u.email) AS folded, u.id, u.name, u.email, u.created,
           (coalesce(u.sysadmin, false) OR coalesce(u.name = %L, false)
            OR EXISTS (SELECT 1 FROM member m WHERE m.table_name = 'user'
                       AND m.table_id = u.id
                       AND m.capacity IN ('admin', 'editor'))
            %s) AS kept
    FROM "user" u
    WHERE u.state = 'active' AND btrim(coalesce(u.email, '')) <> ''
      AND lower(u.email) IN (
          SELECT lower(email) FROM "user" WHERE state = 'active'
          AND btrim(coalesce(email, '')) <> ''
          GROUP BY lower(email) HAVING count(*) > 1)
    ORDER BY lower(u.email), u.created NULLS LAST, u.name
    $query$,
    nullif(btrim(:'site_user'), ''),
    CASE WHEN EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'datagovuk'
                      AND tablename = 'demoted_sysadmins')
         THEN 'OR EXISTS (SELECT 1 FROM datagovuk.demoted_sysadmins d
                          WHERE d.user_id = u.id)'
         ELSE '' END), true, false, '')
WHERE (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'
       AND tablename IN ('user', 'member')) = 2;

COMMIT;
