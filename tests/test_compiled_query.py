"""The verifier's token lookup is compiled once and reads rows exactly as the ORM does."""

from unittest import mock

import pytest
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from foundation.compiled_query import CompiledLookup
from tests.conftest import bearer
from tokens import crypto
from tokens.models import NativeToken
from tokens.verifier import _native_tokens, _token_by_digest, verify_bearer

pytestmark = pytest.mark.django_db


def test_the_token_and_its_user_match_what_the_orm_loads(alice):
    raw = bearer(alice, device_name="laptop")
    token = _token_by_digest.first(crypto.digest(raw))
    expected = NativeToken.objects.select_related("user").get(digest=crypto.digest(raw))

    fields = [f.attname for f in NativeToken._meta.concrete_fields]
    assert {f: getattr(token, f) for f in fields} == {f: getattr(expected, f) for f in fields}
    user_fields = [f.attname for f in type(alice)._meta.concrete_fields]
    assert {f: getattr(token.user, f) for f in user_fields} == {
        f: getattr(expected.user, f) for f in user_fields
    }
    assert token.created_at.tzinfo is not None and token.expires_at.tzinfo is not None
    assert not token._state.adding and not token.user._state.adding
    assert token.user.username == "alice"


def test_annotations_come_back_on_the_instance_as_the_orm_sets_them(alice):
    from tokens.models import CredentialFloor

    raw = bearer(alice)
    assert _token_by_digest.first(crypto.digest(raw)).user_floor is None
    CredentialFloor.objects.create(user=alice, not_before=timezone.now())
    expected = _native_tokens().get(digest=crypto.digest(raw)).user_floor
    assert _token_by_digest.first(crypto.digest(raw)).user_floor == expected is not None


def test_an_unknown_digest_finds_nothing(alice):
    bearer(alice)
    assert _token_by_digest.first(crypto.digest("nat_not-a-real-token")) is None


def test_the_sql_is_compiled_once_not_per_verification(alice):
    raws = [bearer(alice) for _ in range(3)]
    verify_bearer(raws[0])  # compiled here at the latest
    with mock.patch.object(SQLCompiler, "as_sql", autospec=True, side_effect=SQLCompiler.as_sql) as as_sql:
        for raw in raws:
            verify_bearer(raw)
        compiled_for_the_lookup = [c for c in as_sql.call_args_list if c.args[0].query.model is NativeToken]
    # _touch's UPDATE compiles (a write, once a minute per token); the SELECT never does.
    assert all(type(c.args[0]).__name__ == "SQLUpdateCompiler" for c in compiled_for_the_lookup)


def test_a_lookup_with_more_than_one_parameter_is_refused(alice):
    lookup = CompiledLookup(lambda value: NativeToken.objects.filter(digest=value, device_name="x")[:1])
    with pytest.raises(ValueError, match="must be its marks"):
        lookup.first("anything")


def test_a_lookup_with_two_parameters_binds_each_to_its_place(alice, bob, alice_only):
    from django.db import transaction

    from rooms.visibility import NotAllowed, room_for_member

    assert room_for_member(alice, "alice-only").pk == alice_only.pk
    with pytest.raises(NotAllowed):
        room_for_member(bob, "alice-only")
    with transaction.atomic():
        assert room_for_member(alice, "alice-only", lock=True).pk == alice_only.pk
