-- sqlalchemy-migrate's version table, as a dump of a legacy CKAN holds it.
CREATE TABLE migrate_version (
    repository_id character varying(250) NOT NULL,
    repository_path text,
    version integer,
    CONSTRAINT migrate_version_pkey PRIMARY KEY (repository_id)
);
