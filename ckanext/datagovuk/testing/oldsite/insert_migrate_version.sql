INSERT INTO migrate_version VALUES (:id, :path, :version)
