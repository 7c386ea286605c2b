"""Take the SSHSIG blob out of its "-----BEGIN SSH SIGNATURE-----" armour, as OpenSSH does.

This follows sshsig_dearmor() of current OpenSSH (9.5 and later) step by step, because a
verifier that reads the armour more loosely or more strictly than `ssh-keygen -Y verify`
disagrees with it on real input:
- the text must start with the header line, ended by LF or CRLF (no leading whitespace);
- the body runs to the first LF followed by the footer; whatever follows the footer is ignored;
- the body is base64 as b64_pton() reads it: whitespace anywhere, padding only at the end,
  and the unused bits of the last character must be zero. A NUL is allowed only as its last
  byte (sshbuf_dup_string).
"""

from __future__ import annotations

import base64
import binascii

MAX_ARMORED_LENGTH = 16 * 1024  # our own bound, checked before any parsing

_HEADER = b"-----BEGIN SSH SIGNATURE-----"
_FOOTER = b"\n-----END SSH SIGNATURE-----"
_WHITESPACE = b" \t\n\v\f\r"  # C isspace() in the C locale
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Characters that precede padding: how many low bits of the last one carry no data.
_UNUSED_BITS_MASK = {"=": 0x03, "==": 0x0F}


def dearmor(armored: str, error: type[ValueError]) -> bytes:
    """The raw SSHSIG blob inside `armored`; raise `error` where ssh-keygen would refuse it."""
    if len(armored) > MAX_ARMORED_LENGTH:
        raise error("signature is too large")
    text = armored.encode("utf-8")  # the bytes a client would have written to a file
    if not text.startswith(_HEADER):
        raise error("missing SSH SIGNATURE armour header")
    rest = text[len(_HEADER) :]
    for end_of_line in (b"\r\n", b"\n"):
        if rest.startswith(end_of_line):
            rest = rest[len(end_of_line) :]
            break
    else:
        raise error("missing SSH SIGNATURE armour header")
    end = rest.find(_FOOTER)
    if end == -1:
        raise error("missing SSH SIGNATURE armour footer")
    body = rest[:end]
    if body.endswith(b"\0"):
        body = body[:-1]
    if b"\0" in body:
        raise error("signature armour contains a NUL")
    return _b64_pton(body, error)


def _b64_pton(body: bytes, error: type[ValueError]) -> bytes:
    compact = body.translate(None, _WHITESPACE)
    data = compact.rstrip(b"=")
    pad = compact[len(data) :].decode()
    data_chars_in_last_group = {"": 0, "=": 3, "==": 2}.get(pad)
    if data_chars_in_last_group is None or len(data) % 4 != data_chars_in_last_group:
        raise error("signature is not valid base64")
    if data.translate(None, _ALPHABET):
        raise error("signature is not valid base64")
    if pad and _ALPHABET.index(data[-1]) & _UNUSED_BITS_MASK[pad]:
        raise error("signature is not valid base64")  # b64_pton refuses stray bits
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):  # not expected after the checks above
        raise error("signature is not valid base64") from None
