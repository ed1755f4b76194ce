-- After the data migrations: an activity whose actor they deleted is
-- done by the new site's user (datagovuk.site_user), the old name and id
-- kept in its data; an activity whose actor they renamed carries the new
-- name (the user id does not change).  Needs users_before.sql's
-- datagovuk_h_user, taken before the data migrations, and rebuild.sql's
-- tables: an activity it wrote gets its data again from its parts; any
-- other has its data parsed and changed.
CREATE TEMP TABLE datagovuk_h_actor_change ON COMMIT DROP AS
SELECT a.id, a.user_id, old.name AS old_name, u.name AS new_name
FROM activity a
JOIN datagovuk_h_user old ON old.id = a.user_id
LEFT JOIN "user" u ON u.id = a.user_id
WHERE u.id IS NULL OR u.name <> old.name;

CREATE TEMP TABLE datagovuk_h_actor_data ON COMMIT DROP AS
SELECT c.id, CASE WHEN c.new_name IS NULL THEN su.id END AS site_user_id,
       coalesce(c.new_name, c.old_name) AS actor,
       CASE WHEN c.new_name IS NULL
            THEN jsonb_build_object('datagovuk_deleted_actor',
                                    jsonb_build_object('id', c.user_id,
                                                       'name', c.old_name))
            ELSE '{}' END AS added
FROM datagovuk_h_actor_change c
LEFT JOIN "user" su ON su.name = current_setting('datagovuk.site_user', true)
WHERE c.new_name IS NOT NULL OR su.id IS NOT NULL;

UPDATE activity a
SET user_id = coalesce(d.site_user_id, a.user_id),
    data = pg_temp.datagovuk_activity_data(v.package, d.actor, v.revision,
                                           w.rest || d.added)
FROM datagovuk_h_actor_data d
JOIN datagovuk_h_written w ON w.activity_id = d.id
JOIN datagovuk_h_version v ON v.package_id = w.package_id AND v.revision_id = w.revision_id
WHERE a.id = d.id;

UPDATE activity a
SET user_id = coalesce(d.site_user_id, a.user_id),
    data = (coalesce(pg_temp.datagovuk_jsonb(a.data), '{}')
            || jsonb_build_object('actor', d.actor) || d.added)::text
FROM datagovuk_h_actor_data d
WHERE a.id = d.id
  AND NOT EXISTS (SELECT 1 FROM datagovuk_h_written w WHERE w.activity_id = d.id);
