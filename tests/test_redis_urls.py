"""REDIS_URL and REDIS_LAYER_URLS: one reader of every form (foundation/redis_urls.py), clear
errors for bad ones, and Sentinel addresses turned into connections that follow the primary.

Nothing here opens a connection: the failover itself is proven against real redis-server and
Sentinel processes in test_faults_sentinel.py.
"""

import pytest
import redis
import redis.asyncio.sentinel
import redis.sentinel
from channels_redis.core import RedisChannelLayer as UpstreamLayer
from channels_redis.utils import create_pool
from django.core.exceptions import ImproperlyConfigured

from foundation import redis_urls
from foundation.channel_layer import RedisChannelLayer

SENTINELS = "redis+sentinel://:s%40cret@10.0.0.1:26379,[fd00::2]:26380,sentinel-3:26381/native/2"


def test_a_sentinel_url_names_its_sentinels_master_database_and_password():
    address = redis_urls.parse(SENTINELS)
    assert address.uses_sentinel
    assert address.sentinels == (("10.0.0.1", 26379), ("fd00::2", 26380), ("sentinel-3", 26381))
    assert (address.master_name, address.db, address.password) == ("native", 2, "s@cret")
    assert redis_urls.parse("redis+sentinel://10.0.0.1:26379/native").db == 0


def test_an_address_is_shown_without_its_password():
    assert "s@cret" not in redis_urls.parse(SENTINELS).shown
    assert "s%40cret" not in redis_urls.parse(SENTINELS).shown
    assert "s3cret" not in repr(redis_urls.parse("redis://:s3cret@cache:6379/0"))
    assert redis_urls.parse("redis://:s3cret@cache:6379/0").shown == "redis://:***@cache:6379/0"


@pytest.mark.parametrize(
    "url, message",
    [
        ("cache.internal:6379", "must start with redis://, rediss://, unix:// or redis+sentinel://"),
        ("http://cache.internal", "(it has http)"),
        ("redis://cache:port/0", "not a usable Redis URL"),
        ("redis+sentinel://10.0.0.1:26379", "the master name is missing"),
        ("redis+sentinel://10.0.0.1:26379/", "the master name is missing"),
        ("redis+sentinel://10.0.0.1/native", "each Sentinel is HOST:PORT, not '10.0.0.1'"),
        ("redis+sentinel://10.0.0.1:99999/native", "'99999' is not a port"),
        ("redis+sentinel://10.0.0.1:26379,/native", "each Sentinel is HOST:PORT"),
        ("redis+sentinel://user:pw@10.0.0.1:26379/native", "the password goes as :PASSWORD@"),
        ("redis+sentinel://10.0.0.1:26379/native/two", "the database must be a number"),
        ("redis+sentinel://10.0.0.1:26379/native?db=2", "no query string"),
    ],
)
def test_a_bad_url_is_refused_with_a_message_naming_the_setting_and_the_problem(url, message):
    with pytest.raises(ImproperlyConfigured) as refused:
        redis_urls.parse(url, setting="REDIS_URL")
    assert str(refused.value).startswith("REDIS_URL ") and message in str(refused.value)


def test_a_refusal_never_repeats_the_password():
    for url in (
        "redis+sentinel://:hunter2@10.0.0.1/native",
        "http://:hunter2@cache",
        "rediss+x://:hunter2@c",
    ):
        with pytest.raises(ImproperlyConfigured) as refused:
            redis_urls.parse(url)
        assert "hunter2" not in str(refused.value)


def test_a_layer_list_mixes_plain_and_sentinel_urls_whose_commas_are_their_own():
    shards = redis_urls.parse_list(
        "redis://10.0.0.5:6379/0, redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/layer-a,"
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/layer-b/1",
        setting="REDIS_LAYER_URLS",
    )
    assert [(s.uses_sentinel, s.master_name, s.db) for s in shards] == [
        (False, "", 0),
        (True, "layer-a", 0),
        (True, "layer-b", 1),
    ]
    assert shards[1].sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379))


@pytest.mark.parametrize(
    "value, message",
    [
        ("redis://a:6379/0,redis://a:6379/0", "names the same Redis twice"),
        (" , ", "names no Redis URL"),
        ("redis://a:6379/0,b:6379", "REDIS_LAYER_URLS must start with"),
    ],
)
def test_a_bad_layer_list_is_refused(value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        redis_urls.parse_list(value, setting="REDIS_LAYER_URLS")


def test_a_sentinel_address_makes_a_pool_that_asks_the_sentinels_for_the_primary():
    pool = redis_urls.connection_pool(redis_urls.parse(SENTINELS), socket_timeout=2)
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.is_master and pool.service_name == "native"
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (2, "s@cret", 2)
    # Dead Sentinels are skipped at once, not retried with back-off.
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel["socket_timeout"] == redis_urls.SENTINEL_TIMEOUT and sentinel["retry"].get_retries() == 0
    # A READONLY answer (a demoted primary) closes the connection and raises ConnectionError:
    # one retry opens a new connection to wherever the Sentinels say the primary is.
    assert kwargs["retry"].get_retries() == 1


def test_a_plain_address_makes_the_pool_it_always_did():
    pool = redis_urls.connection_pool(redis_urls.parse("redis://10.0.0.5:6380/3"), socket_timeout=2)
    assert type(pool) is redis.ConnectionPool
    assert (pool.connection_kwargs["host"], pool.connection_kwargs["port"], pool.connection_kwargs["db"]) == (
        "10.0.0.5",
        6380,
        3,
    )


def test_the_channel_layer_gets_channels_redis_own_sentinel_pool():
    host = redis_urls.layer_host(redis_urls.parse(SENTINELS), socket_timeout=10)
    pool = create_pool(host)  # what channels-redis does with each entry of "hosts"
    assert isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert pool.service_name == "native" and pool.connection_kwargs["db"] == 2
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [
        26379,
        26380,
        26381,
    ]
    assert redis_urls.layer_host(redis_urls.parse("redis://10.0.0.5:6379/0")) == {
        "address": "redis://10.0.0.5:6379/0"
    }


def test_the_cache_shares_one_pool_per_process_and_address():
    first = redis_urls.shared_pool(SENTINELS, socket_timeout=2)
    assert redis_urls.shared_pool(SENTINELS, socket_timeout=2) is first
    assert redis_urls.shared_pool(SENTINELS, socket_timeout=3) is not first


def test_sends_to_a_process_channel_go_to_the_shard_it_is_read_from():
    """channels-redis routes send() by the whole channel name and receive() by its process part
    (django/channels_redis#220); our layer routes both by the process part."""
    hosts = [{"address": "redis://10.0.0.5:6379/0"}, {"address": "redis://10.0.0.6:6379/0"}]
    ours, upstream = RedisChannelLayer(hosts=hosts), UpstreamLayer(hosts=hosts)
    channels = [f"specific.{ours.client_prefix}!{n:032x}" for n in range(40)]
    read_from = ours.consistent_hash(f"specific.{ours.client_prefix}!")
    assert {ours.consistent_hash(channel) for channel in channels} == {read_from}
    # Still needed: upstream sends some of them to the other shard.
    assert {upstream.consistent_hash(channel) for channel in channels} == {0, 1}
    assert ours.consistent_hash("room.7") == upstream.consistent_hash("room.7")  # groups unchanged
