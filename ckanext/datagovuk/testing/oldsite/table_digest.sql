-- One md5 over the rows of a table, sorted: equal for equal content.
SELECT md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM {table} t
