"""Channel layers that lose what a real outage loses, for the tests of the guarantee: every
change push (foundation.changelog), and every room event with an even seq. A server started with
CHANNEL_LAYER_BACKEND=tests.lossy_layer.… must still enforce every change and deliver every
message, from the database."""

from channels.layers import InMemoryChannelLayer

from foundation.channel_layer import RedisChannelLayer


class LosesEvents:
    async def group_send(self, group, message):
        kind = message.get("type")
        if kind == "foundation.changelog" or (kind == "room.message" and message["seq"] % 2 == 0):
            return None
        return await super().group_send(group, message)


class LossyInMemoryLayer(LosesEvents, InMemoryChannelLayer):
    pass


class LossyRedisLayer(LosesEvents, RedisChannelLayer):
    pass
