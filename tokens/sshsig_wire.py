"""SSH wire-format fields (RFC 4251 section 5) read with OpenSSH's own rules.

The SSHSIG verifier must accept and refuse exactly what `ssh-keygen -Y verify` does, so the
readers below copy the checks of OpenSSH's sshbuf-getput-basic.c and sshbuf-getput-crypto.c
rather than the letter of the RFC: a text field may end in one NUL (dropped), and an mpint may
carry any number of leading zero bytes up to OpenSSH's size limit.
"""

from __future__ import annotations

# SSHBUF_MAX_BIGNUM: 16384-bit numbers, plus one leading zero byte to keep the sign bit clear.
MAX_MPINT_BYTES = 16384 // 8 + 1


def ssh_string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


class Reader:
    """Reads SSH wire-format fields from `data`, raising `error` on anything OpenSSH refuses."""

    def __init__(self, data: bytes, error: type[ValueError]) -> None:
        self._data = data
        self._pos = 0
        self._error = error

    def raw(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            raise self._error("data is truncated")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def uint32(self) -> int:
        return int.from_bytes(self.raw(4), "big")

    def uint64(self) -> int:
        return int.from_bytes(self.raw(8), "big")

    @property
    def position(self) -> int:
        return self._pos

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def string(self) -> bytes:
        return self.raw(self.uint32())

    def cstring(self) -> bytes:
        """A string OpenSSH reads as C text (sshbuf_get_cstring): a NUL only as the last byte."""
        value = self.string()
        nul = value.find(b"\0")
        if nul == -1:
            return value
        if nul != len(value) - 1:
            raise self._error("text field contains a NUL")
        return value[:nul]

    def mpint(self) -> int:
        """A non-negative mpint as sshbuf_get_bignum2 reads it (leading zeros are allowed)."""
        value = self.string()
        if value and value[0] & 0x80:  # two's complement: the high bit means negative
            raise self._error("negative integer")
        if len(value) > MAX_MPINT_BYTES or (len(value) == MAX_MPINT_BYTES and value[0] != 0):
            raise self._error("integer is too large")
        return int.from_bytes(value, "big")

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise self._error("unexpected trailing data")
