#!/usr/bin/env python3
"""Offline check of a Nexora API key's format and checksum: the reference implementation of
the rule the README publishes ("When a key leaks").

A key is 64 ASCII characters: `nxr_`, then 60 characters of 0-9A-Za-z. The last 6 are the
CRC-32 (IEEE 802.3, as zlib.crc32 computes it) of the first 58 characters, written in base 62
with the alphabet 0-9A-Za-z, most significant digit first, padded with '0' to 6 digits.

    python3 nexora_key_check.py < candidates.txt    # prints "valid" or "invalid" per line

A key that passes is well-formed; whether it is live only the server knows (POST
/api/keys/revoke revokes it if it is, and answers 202 either way).
"""

import sys
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(number, width):
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def is_nexora_key(text):
    return (
        len(text) == 64
        and text.startswith("nxr_")
        and all(c in ALPHABET for c in text[4:])
        and text[58:] == base62(zlib.crc32(text[:58].encode("ascii")), 6)
    )


if __name__ == "__main__":
    for line in sys.stdin:
        print("valid" if is_nexora_key(line.strip()) else "invalid")
