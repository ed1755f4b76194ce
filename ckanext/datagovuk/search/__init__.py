"""The site's search index: Solr's CoreAdmin and the schema check
(:mod:`.solr`), CKAN's dataset documents built in batches by forked
workers (:mod:`.indexing`), ``datagovuk reindex`` into a new core, checked
and swapped in (:mod:`.reindex`), and the staging core ``migrate --from``
builds and swaps in with the database (:mod:`.staging`)."""
