"""redis-py's Sentinel-managed connections, made to ask the Sentinels on every reconnection.

redis-py 6.4 asks the Sentinels where the primary is only when a pool hands out a connection
that is not connected. A connection that is dropped and reconnected inside a command's retry (a
READONLY answer from a demoted primary, a reset) reconnects through ``connect_check_health``,
which reuses the old host and port: the retry reached the demoted primary again, and the
command failed although the Sentinels already named the new one. Upstream: redis/redis-py issue
#3874 (open; pull request #3875). Here every connect, whatever path opens it, goes through the
discovery (one SENTINEL MASTERS round trip, only when a connection is opened). And a read that
fails closes its connection (see read_response).
"""

import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.connection
import redis.sentinel


class SentinelConnection(redis.sentinel.SentinelManagedConnection):
    def read_response(self, disable_decoding=False, *, disconnect_on_error=True, push_request=False):
        """A failed read closes the connection, as every other redis-py connection does.

        redis-py 6.4's Sentinel connection defaults ``disconnect_on_error`` to False: after a read
        that timed out (a partition, a stalled primary) the connection went back to the pool with
        its reply still on the way, and the next command sent on it before that reply arrived
        read it as its own: a rate-limit count of None, another key's cached value. Upstream:
        redis/redis-py pull request #4292 (open). PubSub passes False itself, as before."""
        return super().read_response(
            disable_decoding=disable_decoding,
            disconnect_on_error=disconnect_on_error,
            push_request=push_request,
        )

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True):
        if self._sock:
            return
        self.connect()  # discovery, then connect_to() below

    def connect_to(self, address):
        self.host, self.port = address
        redis.connection.Connection.connect_check_health(
            self, check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )


class AsyncSentinelConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    async def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True):
        if self.is_connected:
            return
        await self.connect()  # discovery, then connect_to() below

    async def connect_to(self, address):
        self.host, self.port = address
        await redis.asyncio.connection.Connection.connect_check_health(
            self, check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )
