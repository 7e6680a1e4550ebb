"""Response caching (issue 12): the `semantic_cache` plugin, its stores and its vector index.

store.py         the CacheEntry record and the CacheStore interface every engine implements
stats.py         the counters /metrics and the admin API read (hits, misses, savings, lookup time)
sqlite_store.py  the embedded engine: entries in memory for lookups, persisted to SQLite in the app dir
vectors.py       the in-process nearest-neighbour index for semantic lookups
settings.py      the plugin's config (Go Bifrost's fields) and the per-request x-bf-cache-* headers
key.py           what makes two requests the same: the exact hash, the namespace, the semantic text
replay.py        a stored answer sent again: whole, or as a stream of chunks in any client format
coalesce.py      concurrent identical misses share one upstream call
plugin.py        the pipeline plugin tying these together (docs/caching.md)
"""
