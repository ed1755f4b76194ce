-- ckanext-harvest as the DGU branch had it (publisher_id, frequency,
-- next_run on the source; coupled resources for INSPIRE services).
CREATE TABLE harvest_source (
    id text NOT NULL PRIMARY KEY,
    name text,
    url text NOT NULL,
    title text,
    description text,
    config text,
    created timestamp without time zone,
    type text NOT NULL,
    active boolean,
    user_id text,
    publisher_id text,
    frequency text,
    next_run timestamp without time zone
);
CREATE TABLE harvest_job (
    id text NOT NULL PRIMARY KEY,
    created timestamp without time zone,
    gather_started timestamp without time zone,
    gather_finished timestamp without time zone,
    finished timestamp without time zone,
    source_id text REFERENCES harvest_source (id),
    status text NOT NULL
);
CREATE TABLE harvest_object (
    id text NOT NULL PRIMARY KEY,
    guid text,
    current boolean,
    gathered timestamp without time zone,
    fetch_started timestamp without time zone,
    content text,
    fetch_finished timestamp without time zone,
    import_started timestamp without time zone,
    import_finished timestamp without time zone,
    state text,
    metadata_modified_date timestamp without time zone,
    retry_times integer,
    harvest_job_id text REFERENCES harvest_job (id),
    harvest_source_id text REFERENCES harvest_source (id),
    package_id text REFERENCES package (id) DEFERRABLE,
    report_status text
);
CREATE INDEX harvest_object_guid_idx ON harvest_object (guid);
CREATE INDEX harvest_object_package_id_idx ON harvest_object (package_id);
CREATE TABLE harvest_object_extra (
    id text NOT NULL PRIMARY KEY,
    harvest_object_id text REFERENCES harvest_object (id),
    key text,
    value text
);
CREATE TABLE harvest_gather_error (
    id text NOT NULL PRIMARY KEY,
    harvest_job_id text REFERENCES harvest_job (id),
    message text,
    created timestamp without time zone
);
CREATE TABLE harvest_object_error (
    id text NOT NULL PRIMARY KEY,
    harvest_object_id text REFERENCES harvest_object (id),
    message text,
    stage text,
    line integer,
    created timestamp without time zone
);
CREATE TABLE harvest_coupled_resource (
    id text NOT NULL PRIMARY KEY,
    service_record_package_id text REFERENCES package (id),
    harvest_source_reference text NOT NULL,
    dataset_record_package_id text REFERENCES package (id)
);
