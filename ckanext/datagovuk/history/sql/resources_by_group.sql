-- The versions of each resource with the dataset it belongs to, on a legacy
-- schema before 074: a resource reaches its dataset through its resource
-- group (whose dataset never changes; a group deleted since keeps it in its
-- own revisions).
CREATE TEMP TABLE datagovuk_h_group ON COMMIT DROP AS
SELECT DISTINCT ON (id) id, package_id FROM (
    SELECT id, package_id, 0 AS rank FROM resource_group
    UNION ALL
    SELECT id, package_id, 1 FROM resource_group_revision
    WHERE package_id IS NOT NULL) g
WHERE package_id IS NOT NULL
ORDER BY id, rank;

CREATE TEMP TABLE datagovuk_h_resource ON COMMIT DROP AS
SELECT g.package_id, r.*
FROM resource_revision r JOIN datagovuk_h_group g ON g.id = r.resource_group_id;
