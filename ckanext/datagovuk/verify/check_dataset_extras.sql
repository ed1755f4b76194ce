-- verify's "dataset extras" check: each dataset's extras, old (the
-- manifest's) and migrated.  The rules change only the keys in
-- %(mapped)s (and NULL values): where every other key is the same on
-- both sides, only those keys are sent, so that the rules map a few
-- keys instead of every extra of every dataset.
SELECT name,
       CASE WHEN whole THEN old
            ELSE old - ARRAY(SELECT jsonb_object_keys(old_rest)) END,
       CASE WHEN whole THEN new
            ELSE new - ARRAY(SELECT jsonb_object_keys(new_rest)) END
FROM (
    SELECT name, old, new, old_rest, new_rest,
           old_rest IS DISTINCT FROM new_rest AS whole
    FROM (
        SELECT m.name, m.extras AS old, coalesce(p.extras, '{}'::jsonb) AS new,
               m.extras - %(mapped)s::text[] AS old_rest,
               coalesce(p.extras, '{}'::jsonb) - %(mapped)s::text[] AS new_rest
        FROM datagovuk.manifest_dataset m
        JOIN package p ON p.id = m.id
        -- not merged into the queries above: each rest computed once
        OFFSET 0
    ) parts
) compared
ORDER BY name
