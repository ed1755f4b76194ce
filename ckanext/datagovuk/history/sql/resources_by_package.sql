-- The versions of each resource with the dataset it belongs to, on a legacy
-- schema from 074 on: resource_revision names its dataset.
CREATE TEMP TABLE datagovuk_h_resource ON COMMIT DROP AS
SELECT r.* FROM resource_revision r WHERE r.package_id IS NOT NULL;
