"""A ticket's claim and its credential's row, read together: one statement on PostgreSQL.

The claim is an insert of the ticket's claim key into tokens.UsedTicket that does nothing on a
conflict: the first claim of a ticket inserts, every later one (another process, at the same
instant included) finds the key taken. On PostgreSQL the insert is a ``WITH`` clause of the
query that reads the minting credential (the verifier's lookups: the token and its user, or the
user and the change log's head for a service token), so a ticket connect costs one round trip
and one commit, whatever its outcome. Other databases (SQLite, the embedded default) run the
insert and the query one after the other; their round trips are local.

``claim`` returns (the row or None, whether this call claimed the ticket). The verifier
(tokens.verifier.consume_ticket) decides what they mean; nothing here checks a credential.
"""

from django.db import connection
from django.db.models import BooleanField, CharField, IntegerField
from django.db.models.expressions import RawSQL

from foundation.compiled_query import CompiledLookup
from foundation.models import ChangeHead
from tokens.models import UsedTicket

# Every name below comes from the models, never from input: the only values are parameters.
_TABLE = f'"{UsedTicket._meta.db_table}" ("{UsedTicket._meta.pk.column}")'
_INSERT = f"INSERT INTO {_TABLE} VALUES (%s) ON CONFLICT DO NOTHING"  # noqa: S608 (names from models)
_CLAIM_CTE = f"WITH ticket_claim AS ({_INSERT} RETURNING 1) "

# The annotation that carries the claim's outcome in the "claiming" lookups (PostgreSQL only).
CLAIMED = {"ticket_claimed": RawSQL("EXISTS (SELECT 1 FROM ticket_claim)", (), output_field=BooleanField())}  # noqa: S611


def head_columns() -> dict:
    """The change log's head (epoch, seq) as columns of the same query (tokens.denylist syncs
    to it). Literal SQL, not a Subquery: a CompiledLookup's only parameters are its marks."""
    head = f'(SELECT "{{}}" FROM "{ChangeHead._meta.db_table}" WHERE "id" = 1)'  # noqa: S608 (names from models)
    return {
        "change_epoch": RawSQL(head.format("epoch"), (), output_field=CharField()),  # noqa: S611
        "change_head": RawSQL(head.format("seq"), (), output_field=IntegerField()),  # noqa: S611
    }


def claim(claiming: CompiledLookup, plain: CompiledLookup, claims, value):
    """Claim the ticket ``claims`` and read ``value``'s row: with ``claiming`` (built with
    CLAIMED) in one statement on PostgreSQL, else an insert and then ``plain``."""
    if connection.vendor == "postgresql":
        row = claiming.first(value, prefix=_CLAIM_CTE, prefix_params=(claims.claim_key,))
        # No row: the credential is gone; the ticket was burnt all the same (the insert runs
        # whatever the query finds), which is harmless: it could never be accepted.
        return row, bool(row is not None and row.ticket_claimed)
    claimed = _insert(claims.claim_key)
    return plain.first(value), claimed


def _insert(claim_key: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, [claim_key])
        return cursor.rowcount == 1
