"""Open-loop HTTP/1.1 load generator built on bare asyncio protocols (fast enough to drive a gateway
at thousands of requests per second from one shared core, which aiohttp's client is not).

Import from the submodules (``bench.loadgen.driver``): this package stays import-free so that
``python -m bench.loadgen.worker`` does not load the worker module twice.
"""
