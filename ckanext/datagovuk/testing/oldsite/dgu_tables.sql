-- ckanext-dgu's own tables.
CREATE TABLE data_cache (
    id text NOT NULL PRIMARY KEY,
    object_id text,
    key text NOT NULL,
    value text,
    created timestamp without time zone
);
CREATE INDEX idx_data_cache_object_id ON data_cache (object_id);
CREATE TABLE publisher_request (
    id text NOT NULL PRIMARY KEY,
    user_name text NOT NULL,
    group_name text NOT NULL,
    reason text,
    date_of_request timestamp without time zone,
    date_of_decision timestamp without time zone,
    decision boolean,
    login_token text
);
CREATE TABLE schema (
    id text NOT NULL PRIMARY KEY,
    url text NOT NULL,
    title text NOT NULL
);
CREATE TABLE codelist (
    id text NOT NULL PRIMARY KEY,
    url text NOT NULL,
    title text NOT NULL
);
CREATE TABLE commitment (
    id text NOT NULL PRIMARY KEY,
    source text NOT NULL,
    commitment_text text NOT NULL,
    notes text NOT NULL,
    dataset text NOT NULL,
    publisher text NOT NULL,
    author text,
    dataset_name text,
    created timestamp without time zone,
    state text NOT NULL
);
CREATE INDEX idx_commitment_source ON commitment (source);
CREATE INDEX idx_commitment_publisher ON commitment (publisher);
