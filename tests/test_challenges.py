"""Stateless login challenges (tokens.challenges): a nonce is checked by its signature and the
expiry it carries, and becomes single-use by the one record written when it is used."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tokens import challenges
from tokens.models import LoginNonce

pytestmark = pytest.mark.django_db

OLD_KEY = "an-old-secret-key-" + "o" * 40
NEW_KEY = "a-new-secret-key-" + "n" * 40


@pytest.fixture
def clock(monkeypatch):
    """challenges._now, moved by hand: clock.at = seconds from the real now."""

    class Clock:
        start = timezone.now()
        at = 0.0

    fake = Clock()
    monkeypatch.setattr(challenges, "_now", lambda: fake.start + timedelta(seconds=fake.at))
    return fake


def test_issuing_a_nonce_writes_nothing_and_using_it_writes_one_record(django_assert_num_queries):
    with django_assert_num_queries(0):
        nonce = challenges.issue()
    assert challenges.consume(nonce)
    assert LoginNonce.objects.count() == 1


def test_a_nonce_lives_exactly_its_sixty_seconds(clock):
    first, second = challenges.issue(), challenges.issue()
    clock.at = 59.999
    assert challenges.consume(first)
    clock.at = 60.0
    assert not challenges.consume(second)


def test_a_used_nonce_is_refused_until_it_expires_and_after(clock):
    nonce = challenges.issue()
    assert challenges.consume(nonce)
    assert not challenges.consume(nonce)
    clock.at = 30
    assert not challenges.consume(nonce)
    clock.at = 3600
    assert not challenges.consume(nonce)


def _variants(nonce: str) -> list[str]:
    value, signature = nonce.rsplit(":", 1)
    nonce_id, expiry = value.split(".")
    flipped = "A" if nonce_id[0] != "A" else "B"
    return [
        "",
        "made-up-nonce",
        nonce_id,  # the random part alone, as earlier versions issued it
        value,  # unsigned
        f"{flipped}{nonce_id[1:]}.{expiry}:{signature}",  # another id under this signature
        f"{nonce_id}.{int(expiry) + 3_600_000}:{signature}",  # a longer life
        f"{value}:{signature[:-1]}",
        f"{value}:{signature}x",
        nonce + "\n",
        nonce.replace(":", "é"),
        nonce + "x" * 200,
        f"{nonce_id}.{expiry}.1:{signature}",
    ]


def test_forged_altered_or_malformed_nonces_are_refused_without_a_query(django_assert_num_queries):
    nonce = challenges.issue()
    with django_assert_num_queries(0):
        assert [v for v in _variants(nonce) if challenges.consume(v)] == []
    assert challenges.consume(nonce)  # the real one was not used up by its variants


def test_a_nonce_signed_with_a_fallback_key_works_during_a_rotation_and_not_after(settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    during, after = challenges.issue(), challenges.issue()

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert challenges.consume(during)
    settings.SECRET_KEY_FALLBACKS = []
    assert not challenges.consume(after)
    assert challenges.consume(challenges.issue())


@pytest.mark.django_db(transaction=True)
def test_of_eight_threads_using_one_nonce_at_once_exactly_one_wins():
    """Each thread has its own database connection: on PostgreSQL the unique index decides
    (a second INSERT waits for the first and fails); on SQLite, its single writer."""
    nonce = challenges.issue()
    start, results = threading.Barrier(8), []

    def use():
        try:
            start.wait()
            results.append(challenges.consume(nonce))
        finally:
            connection.close()

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] * 7 + [True]
    assert LoginNonce.objects.count() == 1
