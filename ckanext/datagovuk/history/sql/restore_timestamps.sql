-- After CKAN's upgrade: its revision 085 moves every activity timestamp by
-- the UTC offset of the process running it (its local time zone, taken at
-- an instant of 1970), to turn CKAN 2.2's local times into UTC.  An
-- activity the history conversion wrote already holds the UTC time of its
-- revision, also in its data: put that back.  Changes nothing when 085 did
-- not move it.  restore_timestamps_known.sql does the same without reading
-- the data when rebuild.sql ran in this transaction.
UPDATE activity
SET timestamp = (data::jsonb #>> '{datagovuk_revision,timestamp}')::timestamp
WHERE data LIKE '%"datagovuk_revision"%'
  AND timestamp IS DISTINCT FROM
      (data::jsonb #>> '{datagovuk_revision,timestamp}')::timestamp;
