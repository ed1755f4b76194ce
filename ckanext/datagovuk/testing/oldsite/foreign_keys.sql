-- The foreign keys of the public schema: table, name, definition.
SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE contype = 'f'
AND connamespace = 'public'::regnamespace ORDER BY 1, 2
