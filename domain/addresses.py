"""The building, stair and room numbers at the end of a Chinese address.

Registry locations and utility addresses name the same flat in different
ways (`5号楼1单元1201`, `5栋1单元1201室`, `5-1-1201`), but the three numbers
at the end agree. They are enough to tell two flats of one estate apart;
they do not identify the estate, so a match is evidence, never proof.
"""

import re

from domain.identifiers import fold_width

NUMBER = re.compile(r"\d+")


def trailing_numbers(address, count=3):
    """Return up to `count` numbers from the end of `address`, in order."""
    if not address:
        return ()
    return tuple(int(n) for n in NUMBER.findall(fold_width(address))[-count:])


def same_flat(first, second):
    """Say whether two addresses end with the same building, stair and room.

    With fewer than three numbers in either, only the room is compared.
    Returns None when either address has no number at all.
    """
    left, right = trailing_numbers(first), trailing_numbers(second)
    if not left or not right:
        return None
    if len(left) == 3 and len(right) == 3:
        return left == right
    return left[-1] == right[-1]
