-- restore_timestamps.sql for the activities rebuild.sql has just converted
-- or found converted (datagovuk_h_stamp, same transaction): their revision
-- times are known, no activity's data is read.
UPDATE activity a
SET timestamp = s.ts
FROM datagovuk_h_stamp s
WHERE a.id = s.activity_id AND a.timestamp IS DISTINCT FROM s.ts;
