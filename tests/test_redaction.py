"""native_api.redaction: credentials leave a log line whatever their encoding, and nothing else
does. The end-to-end proof, under real servers, is tests/test_e2e_log_redaction.py."""

import random
from urllib.parse import quote, unquote

import pytest
from django.core import signing

from native_api.redaction import redact
from tests.secrets_scan import leaks
from tokens import crypto

TOKEN = crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX)
# A ticket's shape (tokens.tickets): the prefix, a signed payload, its signature.
TICKET = "wst_" + signing.Signer(key="k" * 50, salt="shape").sign_object({"r": "0" * 22, "x": 1, "u": 1})
SERVICE = (
    "nst_eyJqdGkiOiIxUHRhMDRFY1piZmNFUGlJYWkyUGtGME54Y2pMIiwic3ViIjoxfQ:1xaVJO:0dnagJ-CS5SeSH4XA0_SjP7QAuW"
)
SECRETS = {"token": TOKEN, "ticket": TICKET, "service token": SERVICE}


def escaped(text: str, lower: bool = False) -> str:
    out = "".join(f"%{byte:02X}" for byte in text.encode())
    return out.lower() if lower else out


def clean(line: str) -> list[str]:
    """Secrets found in the redacted line, as written or percent-decoded."""
    redacted = redact(line)
    return leaks(redacted, SECRETS) + leaks(unquote(unquote(redacted)), SECRETS)


@pytest.mark.parametrize(
    "query",
    [
        f"ticket={TICKET}",
        f"%74icket={TICKET}",
        f"%74%69%63%6B%65%74={escaped(TICKET)}",
        f"ticket={escaped(TICKET, lower=True)}",
        f"ticket=%77st_{TICKET[4:]}",
        f"ticket=+{TICKET}",
        f"TICKET={TICKET}",
        f"Ticket=%2577st_{TICKET[4:]}",  # double-encoded
        f"x=1&ticket=nope&ticket={TICKET}",  # repeated: every value goes
        f"a=1;token={TOKEN}",
        f"token={escaped(TOKEN)}&token={TICKET}",
        f"%74oken=%6Eat_{TOKEN[4:]}",
        f"access_token={quote(SERVICE, safe='')}",
        f"token={SERVICE}",
        f"nonce=x&signature=y&ticket={TICKET}",
    ],
)
def test_a_credential_parameter_is_redacted_however_it_is_encoded(query):
    for line in (
        f'127.0.0.1:5000 - "WebSocket /api/ws/native?{query}" [accepted]',
        f'127.0.0.1:5000 - - [07/Dec/2026:10:00:00] "GET /api/native/me?{query}" 401 69',
        f"query string b'{query}'",
    ):
        assert clean(line) == [], redact(line)


@pytest.mark.parametrize(
    "line",
    [
        f"Not Found: /api/native/{TOKEN}",
        f"GET /api/native/%6Eat_{TOKEN[4:]} HTTP/1.1",
        f"GET /api/native/rooms/{escaped(TOKEN)}/history HTTP/1.1",
        f"GET /api/native/rooms/x{escaped(TICKET)}/history HTTP/1.1",
        f"copied: X{TOKEN}",  # glued to other text
        f"Authorization: Bearer {SERVICE}",
        f"{{'authorization': 'Bearer {TOKEN}'}}",
        f"service token {SERVICE} refused",
        f"a prefix: {TOKEN[:12]}",
    ],
)
def test_a_credential_shaped_value_is_redacted_anywhere(line):
    assert clean(line) == [], redact(line)


@pytest.mark.parametrize(
    "line",
    [
        '127.0.0.1:5000 - "GET /api/native/rooms/general/history?limit=50&after=3 HTTP/1.1" 200',
        "jti=4dRmDL0fyBSjYllzmCMnZ41kkok5 expires_at=2026-12-07T10:00:00.000Z",
        "GET /static/admin/css/base.css?v=1%202 HTTP/1.1",
        "rate limit challenge reached by 2001:db8:48::/64",
        "the lowest_expiry_seconds against_the_wind newest_first",
    ],
)
def test_lines_without_credentials_are_left_alone(line):
    assert redact(line) == line


def test_random_encodings_of_real_credentials_never_survive():
    """Each character of a name and a value percent-encoded or not, hex digits in either case,
    ``&`` or ``;`` around it: 2,000 seeded lines."""
    rng = random.Random(20)

    def encode(text: str) -> str:
        out = []
        for char in text:
            if rng.random() < 0.4:
                hex_digits = f"{ord(char):02X}"
                out.append("%" + (hex_digits.lower() if rng.random() < 0.5 else hex_digits))
            else:
                out.append(char)
        return "".join(out)

    for _ in range(2000):
        name, secret = rng.choice([("ticket", TICKET), ("token", TOKEN), ("token", SERVICE)])
        before = rng.choice(["", "x=1&", "a=b;", f"{name}=first&"])
        query = f"{before}{encode(name)}={encode(secret)}{rng.choice(['', '&y=2', ';z'])}"
        line = f'127.0.0.1:1 - "WebSocket /api/ws/native?{query}" [accepted]'
        assert clean(line) == [], line
