"""Certificate serial numbers.

CA/B Forum BR 7.1 wants at least 64 bits of CSPRNG output in every serial, RFC 5280 4.1.2.2
wants a positive INTEGER of at most 20 octets. Sixteen random bytes with the top bit cleared
give 127 bits of entropy and always encode in 16 or 17 octets. Uniqueness is the caller's job:
it stores the serial under a unique index and draws again on the (astronomically unlikely)
collision, which is why drawing is a function of its own.
"""

from __future__ import annotations

import secrets
from typing import Final

SERIAL_BYTES: Final = 16
_TOP_BIT_CLEARED: Final = (1 << (SERIAL_BYTES * 8 - 1)) - 1


def new_serial_number() -> int:
    """A fresh positive serial number with 127 bits of entropy."""
    while True:
        serial = int.from_bytes(secrets.token_bytes(SERIAL_BYTES), "big") & _TOP_BIT_CLEARED
        if serial:
            return serial


def serial_hex(serial: int) -> str:
    """The serial as the lower-case hex string the event contract uses (``cert.issued.serial``)."""
    return format(serial, "x")


def parse_serial_hex(text: str) -> int:
    """The inverse of ``serial_hex``; refuses anything that is not a positive hex serial."""
    if not text or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("serial must be lower-case hex")
    serial = int(text, 16)
    if serial <= 0 or serial.bit_length() > 159:
        raise ValueError("serial must be positive and fit in 20 octets")
    return serial
