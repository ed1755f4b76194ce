-- verify's "resources" check: the manifest's active resources that the
-- rules may change (an "Organogram viewer" link, a URL under the old
-- file store %(old_files)s), or that are gone, inactive or differ; a
-- resource the rules leave alone and found as it was is compared here
-- and never leaves the server.
SELECT m.id, d.name, d.extras -> 'schema', d.extras -> 'schema-vocabulary',
       m.package_id, m.url, m.format, m.name, m.description_md5, m.viewer,
       m.position, r.id IS NOT NULL, r.state, r.package_id, r.url, r.format,
       r.name, md5(coalesce(r.description, '')), r.position
FROM datagovuk.manifest_resource m
JOIN datagovuk.manifest_dataset d ON d.id = m.package_id
LEFT JOIN resource r ON r.id = m.id
WHERE r.id IS NULL
   OR m.viewer
   OR starts_with(m.url, %(old_files)s)
   OR r.state IS DISTINCT FROM 'active'
   OR (m.package_id, m.url, m.format, m.name, m.description_md5, m.position)
      IS DISTINCT FROM
      (r.package_id, r.url, r.format, r.name, md5(coalesce(r.description, '')),
       r.position)
ORDER BY d.name, m.id
