"""``datagovuk verify``: the manifest ``migrate`` records before anything
changes (:mod:`.manifest`, ``manifest.sql``), the documented rules of the
move (:mod:`.rules`), the checks comparing a migrated database with its
manifest (:mod:`.checks`, one registry), CKAN's API asked for a sample
(:mod:`.api_sample`) and the command's run and report (:mod:`.run`)."""
