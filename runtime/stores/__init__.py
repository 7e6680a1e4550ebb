"""Stores: what the gateway keeps outside a request, behind one interface per concern.

    config.py   ConfigStore   the config document: load, mutate atomically, notify on change
    logs.py     LogStore      the request log: a batched writer and the admin read side
    shared.py   SharedState   what workers (later: instances) share: windowed counters, KV + TTL, pub/sub
    engines.py  the table of engines per store (`config_store.type` / `logs_store.type` select one)

One module per engine (`config_file.py`, `logs_sqlite.py`, `shared_sqlite.py`); nothing above a store
imports an engine's driver (aiosqlite, sqlite3), so a PostgreSQL or Redis engine is one more module
and one more table row.
"""
