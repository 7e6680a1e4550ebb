"""Byte-level stream codecs and typed JSON field reads, below `providers/` (which decode upstream
streams with them) and below `wire/` (whose client-format translators encode our streams with them):
no provider or format knowledge.

    sse.py          server-sent events: incremental parser, event encoders
    eventstream.py  AWS event-stream framing (Bedrock ConverseStream)
    fields.py       typed accessors for client JSON (every translator, ingress and provider side)
"""
