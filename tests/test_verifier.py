"""The verifier against the lines that kill credentials without touching their row: the per-user
floor of ``revoke_user_tokens`` (service tokens, and native tokens whose row it could not see)
and NATIVE_SERVICE_TOKEN_MAX_TTL.

alice's tokens meet the floor; bob's meet the deny-list. Service tokens "of an earlier version"
are built here with the signing salt, the way older code minted them (``iat`` in whole seconds,
or no ``iat`` at all).
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import signing
from django.utils import timezone

from tokens import service_tokens
from tokens.denylist import denylist
from tokens.exceptions import ExpiredCredential, RevokedCredential
from tokens.models import CredentialFloor
from tokens.purge import purge
from tokens.revocation import revoke_by_id, revoke_user
from tokens.tickets import mint as mint_ticket
from tokens.verifier import consume_ticket, verify_bearer

pytestmark = pytest.mark.django_db

DAY = 86400


def older_token(user, *, issued_at: int | None, lifetime: int = 3600) -> str:
    """A service token as code before this one minted it: iat in whole seconds, or none."""
    exp = (issued_at or int(timezone.now().timestamp())) + lifetime
    payload = {"jti": service_tokens.new_jti(), "sub": user.pk, "name": "", "exp": exp}
    if issued_at is not None:
        payload["iat"] = issued_at
    return service_tokens.PREFIX + signing.dumps(payload, salt=service_tokens._SALT, compress=False)


def floor_at(user, moment: datetime) -> None:
    CredentialFloor.objects.update_or_create(user=user, defaults={"not_before": moment})
    denylist.forget()  # the next check loads the floor from the database


# --- the floor, to the microsecond -------------------------------------------------------------


def test_the_issue_time_survives_the_round_trip_to_the_microsecond(alice):
    raw, claims = service_tokens.mint(alice)
    assert service_tokens.read(raw).issued_at == claims.issued_at
    assert verify_bearer(raw).issued_at == claims.issued_at


def test_a_token_minted_after_the_floor_in_the_same_second_works_and_one_before_it_does_not(alice):
    raw, claims = service_tokens.mint(alice)
    floor_at(alice, claims.issued_at - timedelta(microseconds=1))
    assert verify_bearer(raw).user == alice
    floor_at(alice, claims.issued_at + timedelta(microseconds=1))
    with pytest.raises(RevokedCredential):
        verify_bearer(raw)


def test_a_token_minted_at_the_floors_exact_microsecond_is_refused(alice):
    raw, claims = service_tokens.mint(alice)
    floor_at(alice, claims.issued_at)
    with pytest.raises(RevokedCredential):
        verify_bearer(raw)


def test_an_older_token_with_whole_second_iat_is_refused_anywhere_in_the_floors_second(alice):
    """Its iat cannot say whether it came before or after the floor within that second."""
    second = int(timezone.now().timestamp())
    same_second = older_token(alice, issued_at=second)
    next_second = older_token(alice, issued_at=second + 1)
    for micro in (0, 1, 999_999):
        floor_at(alice, datetime.fromtimestamp(second, tz=UTC) + timedelta(microseconds=micro))
        with pytest.raises(RevokedCredential):
            verify_bearer(same_second)
        assert verify_bearer(next_second).user == alice


def test_a_native_token_created_before_its_users_floor_is_refused_though_its_row_was_not_revoked(alice):
    """A login that commits just after revoke_user_tokens read the user's tokens leaves a row it
    never revoked; the floor still refuses it, as it already closed its sockets (live.poller)."""
    from tests.conftest import bearer
    from tokens.models import NativeToken

    raced = bearer(alice)
    ticket = mint_ticket(verify_bearer(raced))
    floor_at(alice, timezone.now())
    later = bearer(alice)

    with pytest.raises(RevokedCredential):
        verify_bearer(raced)
    with pytest.raises(RevokedCredential):
        consume_ticket(ticket)
    assert verify_bearer(later).user == alice
    assert [t.digest for t in NativeToken.objects.live()] == [verify_bearer(later).native_token.digest]


# --- the maximum lifetime ---------------------------------------------------------------------


def test_a_token_living_longer_than_the_current_maximum_is_refused(alice, settings):
    long_lived, _ = service_tokens.mint(alice, ttl=2 * 3600)
    short_lived, _ = service_tokens.mint(alice, ttl=3600)
    ticket = mint_ticket(verify_bearer(long_lived))

    settings.NATIVE_SERVICE_TOKEN_MAX_TTL = 3600

    with pytest.raises(ExpiredCredential):
        verify_bearer(long_lived)
    with pytest.raises(ExpiredCredential):
        consume_ticket(ticket)
    assert verify_bearer(short_lived).user == alice
    settings.NATIVE_SERVICE_TOKEN_MAX_TTL = 2 * 3600
    assert verify_bearer(long_lived).user == alice


def test_a_token_without_iat_is_refused_since_its_lifetime_is_unknown(alice):
    with pytest.raises(ExpiredCredential):
        verify_bearer(older_token(alice, issued_at=None))


def test_a_token_of_an_earlier_version_within_the_maximum_still_works(alice):
    assert verify_bearer(older_token(alice, issued_at=int(timezone.now().timestamp()) - 5)).user == alice


def test_lowering_the_maximum_and_purging_never_revives_a_revoked_service_token(alice, bob, settings):
    """The floor and the deny-list row outlive every token they refuse, whatever the maximum was,
    is, or will be: lower it, revoke, purge when the lower maximum says they are spent, raise it
    back, and the tokens are still refused."""
    settings.NATIVE_SERVICE_TOKEN_MAX_TTL = 30 * DAY
    alices, _ = service_tokens.mint(alice, ttl=30 * DAY)
    bobs, bobs_claims = service_tokens.mint(bob, ttl=30 * DAY)
    revoke_user(alice)
    settings.NATIVE_SERVICE_TOKEN_MAX_TTL = 3600
    revoke_by_id(bobs_claims.jti)  # no --expires-at: kept for the longest a token can live

    later = timezone.now() + timedelta(seconds=3600 + settings.NATIVE_PURGE_GRACE + 60)
    purge(now=later)
    settings.NATIVE_SERVICE_TOKEN_MAX_TTL = 30 * DAY
    denylist.forget()  # as a process that loads its copy after the purge (a restart, a new worker)

    with pytest.raises(RevokedCredential):
        verify_bearer(alices)
    with pytest.raises(RevokedCredential):
        verify_bearer(bobs)
