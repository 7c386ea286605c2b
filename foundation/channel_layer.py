"""channels-redis's RedisChannelLayer, with sends to a process-local channel routed to the shard
that channel is read from.

With several hosts (REDIS_LAYER_URLS), channels-redis 4.3 picks the shard of ``send()`` to a
process-local channel (``specific.<process>!<id>``) from the full name, but reads that channel
from the shard of its process part (``specific.<process>!``), and ``group_send`` also routes by
the process part. So a direct send landed on another shard half of the time with two shards and
was never received: the health probe and /metrics' layer probe reported a working layer down.
Upstream: django/channels_redis pull request #220 (open since 2020), django/channels issue #1492.
Hashing only the process part of a channel name routes every call the same way; with one host
nothing changes (a ring of one has one shard).
"""

from channels_redis.core import RedisChannelLayer as UpstreamRedisChannelLayer


class RedisChannelLayer(UpstreamRedisChannelLayer):
    def consistent_hash(self, value):
        if isinstance(value, bytes):
            value = value.decode()
        process_part, bang, _ = value.partition("!")
        return super().consistent_hash(process_part + bang)
