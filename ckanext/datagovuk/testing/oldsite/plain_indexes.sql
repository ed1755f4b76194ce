-- The indexes of the public schema that back no primary key or unique
-- constraint: name, definition.
SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
AND indexname NOT IN (SELECT conname FROM pg_constraint
                      WHERE contype IN ('p', 'u'))
ORDER BY 1
