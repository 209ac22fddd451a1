-- SQLite rebuilds its link tables with foreign keys checked at the commit, which spares it a
-- statement journal on bulk inserts. PostgreSQL keeps no such journal and checks a deferred key
-- no more cheaply than an immediate one, so its schema stays as it is.
SELECT 1;
