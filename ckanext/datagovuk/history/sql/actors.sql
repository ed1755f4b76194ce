-- After the data migrations: an activity whose actor they deleted is
-- done by the new site's user (datagovuk.site_user), the old name and id
-- kept in its data; an activity whose actor they renamed carries the new
-- name (the user id does not change).  Needs users_before.sql's
-- datagovuk_h_user, taken before the data migrations.
CREATE TEMP TABLE datagovuk_h_actor_change ON COMMIT DROP AS
SELECT a.id, a.user_id, old.name AS old_name, u.name AS new_name
FROM activity a
JOIN datagovuk_h_user old ON old.id = a.user_id
LEFT JOIN "user" u ON u.id = a.user_id
WHERE u.id IS NULL OR u.name <> old.name;

UPDATE activity a
SET user_id = su.id,
    data = (coalesce(pg_temp.datagovuk_jsonb(a.data), '{}') || jsonb_build_object(
        'actor', c.old_name,
        'datagovuk_deleted_actor', jsonb_build_object('id', c.user_id,
                                                      'name', c.old_name)))::text
FROM datagovuk_h_actor_change c, "user" su
WHERE a.id = c.id AND c.new_name IS NULL
  AND su.name = current_setting('datagovuk.site_user', true);

UPDATE activity a
SET data = (coalesce(pg_temp.datagovuk_jsonb(a.data), '{}')
            || jsonb_build_object('actor', c.new_name))::text
FROM datagovuk_h_actor_change c
WHERE a.id = c.id AND c.new_name IS NOT NULL;
