-- migrate --no-history: no activity was converted; the archived mapping
-- says so.
CREATE TEMP TABLE datagovuk_h_outcome (
    activity_id text, revision_id text, object_id text, outcome text,
    reason text) ON COMMIT DROP;
