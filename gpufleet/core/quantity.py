"""Kubernetes resource quantities ("500m", "2Gi", "1.5", "1e3") as exact decimals, then integer units.

The grammar is apimachinery's ``resource.Quantity``: a signed decimal number and one suffix, binary SI
(Ki..Ei), decimal SI (n, u, m, "", k..E) or an exponent (e3, E-2). Values are bounded so hostile input
("1e999999") cannot make a huge integer. No I/O here.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_PATTERN = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))([eE][+-]?\d{1,3}|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_MAX = Decimal(2**63 - 1)
_MIB = 2**20


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity, or one out of range."""


def parse_quantity(value: object) -> Decimal:
    """The exact value of a quantity string (JSON numbers are accepted too, as Go's decoder does)."""
    if isinstance(value, bool):
        raise QuantityError(f"expected a quantity, got {value!r}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise QuantityError(f"expected a finite quantity, got {value!r}")
        number = Decimal(str(value))
    elif isinstance(value, str):
        if len(value) > 64:
            raise QuantityError(f"quantity too long ({len(value)} characters)")
        match = _PATTERN.fullmatch(value.strip())
        if match is None:
            raise QuantityError(f"not a quantity: {value!r}")
        digits, suffix = match.group(1), match.group(2) or ""
        try:
            number = Decimal(digits)
        except InvalidOperation as err:
            raise QuantityError(f"not a quantity: {value!r}") from err
        if suffix in _BINARY:
            number *= _BINARY[suffix]
        elif suffix in _DECIMAL:
            number = number.scaleb(_DECIMAL[suffix])
        else:
            number = number.scaleb(int(suffix[1:]))
    else:
        raise QuantityError(f"expected a quantity string, got {type(value).__name__}")
    if number < 0:
        raise QuantityError(f"quantity must be >= 0, got {value!r}")
    if number > _MAX:
        raise QuantityError(f"quantity out of range: {value!r}")
    return number


def _integer(number: Decimal, up: bool) -> int:
    return int(number.to_integral_value(rounding="ROUND_CEILING" if up else "ROUND_FLOOR"))


def to_milli(value: object, up: bool = True) -> int:
    """CPU in millicores, rounded up as Kubernetes does for requests ("0.1" -> 100, "1u" -> 1);
    ``up=False`` rounds down, for capacities."""
    return min(_integer(parse_quantity(value) * 1000, up), 2**63 - 1)


def to_mib(value: object, up: bool = True) -> int:
    """Memory in MiB ("1Gi" -> 1024, "1G" -> 954 rounded up); ``up=False`` rounds down, for capacities."""
    return _integer(parse_quantity(value) / _MIB, up)


def to_count(value: object, up: bool = True) -> int:
    """An extended resource count such as nvidia.com/gpu."""
    return _integer(parse_quantity(value), up)
