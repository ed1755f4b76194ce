-- The link from each activity to its revision, which CKAN's revision 093
-- drops with activity.revision_id, kept in the archive with what the
-- history conversion did to the activity, so the conversion can be checked
-- and done again from the archived revision tables.  A later run adds only
-- activities not archived yet.
CREATE SCHEMA IF NOT EXISTS datagovuk_legacy;
CREATE TABLE IF NOT EXISTS datagovuk_legacy.activity_revision (
    activity_id text PRIMARY KEY,
    revision_id text,
    object_id text,
    activity_type text,
    history text,
    reason text
);
INSERT INTO datagovuk_legacy.activity_revision
SELECT a.id, a.revision_id, a.object_id, a.activity_type,
       coalesce(o.outcome, 'not converted'), o.reason
FROM activity a
LEFT JOIN datagovuk_h_outcome o ON o.activity_id = a.id
WHERE a.revision_id IS NOT NULL
ON CONFLICT (activity_id) DO NOTHING;
