"""Where a Redis URL points, for reprs and messages: parsed as redis-py parses it, never with its password.

Shared by the fleet limiter and the phrase cache; importing it loads nothing: redis-py is imported when a
``RedisLimiter`` or ``RedisCache`` is made, through :func:`redis_location`.
"""

from __future__ import annotations


def redis_location(url: str, owner: str) -> str:
    """``host:port/db`` (or ``path/db``) of ``url``; checks that redis-py is installed and that it takes the URL.

    A bad scheme, port or database raises ``ValueError`` here, without connecting. The password, whether
    in the user part or in ``?password=``, is never part of the result.
    """
    try:
        import redis.asyncio
    except ImportError as exc:
        raise ImportError(f"{owner} needs redis-py: pip install 'amazon-polly-streaming[redis]' ({exc})") from exc
    kwargs = redis.asyncio.ConnectionPool.from_url(url).connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return f"{where}/{kwargs.get('db', 0)}"
