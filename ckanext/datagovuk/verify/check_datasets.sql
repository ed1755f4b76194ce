-- verify's "datasets" check: the manifest's datasets that are gone or
-- whose fields differ from the migrated ones (every one of these fields
-- is expected unchanged); the others are compared here and never leave
-- the server.
SELECT m.name, m.type, m.state, m.title, m.notes_md5, m.owner_org,
       m.license_id, p.id IS NOT NULL, p.name, p.type, p.state, p.title,
       md5(coalesce(p.notes, '')), p.owner_org, p.license_id
FROM datagovuk.manifest_dataset m
LEFT JOIN package p ON p.id = m.id
WHERE p.id IS NULL
   OR (m.name, m.type, m.state, m.title, m.notes_md5, m.owner_org,
       m.license_id)
      IS DISTINCT FROM
      (p.name, p.type, p.state, p.title, md5(coalesce(p.notes, '')),
       p.owner_org, p.license_id)
ORDER BY m.name, m.id
