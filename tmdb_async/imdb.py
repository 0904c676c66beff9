"""IMDb title ids: the one canonical form, and why a value is not one."""

from __future__ import annotations

ID_DIGITS = (7, 9)  # an IMDb title id has 7 to 9 digits: tt0000001 .. tt999999999


_ID_RULE = "tt + 7 to 9 digits 0-9"


_NULL = "\\N"


def canonical_number(value: str) -> int | None:
    """The number of ``value`` when it is a valid IMDb title id in canonical form, else None.

    Canonical: ``tt``, then ASCII digits only, exactly 7 of them (zero-padded) below
    10,000,000, else 8 or 9 without a leading zero. One number has one canonical form.
    """
    size = len(value)
    if 9 <= size <= 11 and value.startswith("tt") and value.isascii():
        digits = value[2:]
        # isdigit() of an ASCII string accepts 0-9 only (of any string: all Unicode digits)
        if digits.isdigit() and (size == 9 or digits[0] != "0"):
            return int(digits)
    return None


def canonical_form(number: int) -> str:
    """The one way to write IMDb title id ``number``: ``tt`` + at least 7 digits."""
    return f"tt{number:07d}"


def check_id(value: str) -> str | None:
    """Why ``value`` is not an IMDb title id, or ``None`` when it is one (canonical form).

    The reason is one short line; it never repeats ``value`` itself, which may be huge.
    """
    if canonical_number(value) is not None:
        return None
    if value == "" or value == _NULL:
        return "empty id"
    prefix, digits = value[:2], value[2:]
    if prefix.lower() != "tt" or not digits.isdigit():  # isdigit: any Unicode digit
        return f"not an IMDb title id ({_ID_RULE})"
    if not digits.isascii():
        bad = next(char for char in digits if not char.isascii())
        return f"not an IMDb title id: ASCII digits 0-9 only, not {bad!r} (U+{ord(bad):04X})"
    significant = digits.lstrip("0")
    if len(significant) > ID_DIGITS[1]:
        return (
            f"longer than IMDb could issue: a {len(significant)}-digit number "
            f"(at most {ID_DIGITS[1]})"
        )
    if len(digits) < ID_DIGITS[0]:
        count = len(digits)
        return f"not an IMDb title id ({_ID_RULE}): {count} digit{'' if count == 1 else 's'}"
    # Upper-case TT, or zero-padded beyond the canonical form: one title, one way to write it.
    canonical = canonical_form(int(significant or "0"))
    return f"not the canonical form of this IMDb id: write {canonical}"
