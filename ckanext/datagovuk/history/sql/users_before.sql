-- Every user's name before the data migrations delete or rename some:
-- actors.sql maps the actors of activities through those changes.
CREATE TEMP TABLE datagovuk_h_user ON COMMIT DROP AS
SELECT id, name FROM "user";
