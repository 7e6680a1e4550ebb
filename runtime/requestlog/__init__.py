"""The request log's engine-neutral parts: one request -> one row (record.py), and the filters and
pages of the admin queries (filters.py). Storing and querying rows is the log store's job
(runtime/stores/logs.py; the embedded SQLite engine is runtime/stores/logs_sqlite/)."""
