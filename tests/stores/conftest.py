"""The shared-state tests use the real redis-server fixtures of tests/conftest.py (`redis_server`,
`redis_url`), started by tests/harness/redis.py; the names are re-exported here for the tests that
import them from this module."""

from harness.redis import RedisServer, free_port, start_redis

__all__ = ["RedisServer", "free_port", "start_redis"]
