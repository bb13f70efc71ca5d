"""Exact money. Amounts are integers of pico-USD (1e-12 USD): a price of up to six decimals per
1M tokens is a whole number of pico-USD per token, so a request's cost is an exact integer sum.
Python integers don't overflow; 64-bit storage holds balances up to about 9.2 million USD."""

from __future__ import annotations

import re
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, Underflow
from typing import TYPE_CHECKING, NamedTuple

import msgspec

if TYPE_CHECKING:
    from lmrouter.usage import Usage

PICO_PER_USD = 10**12
_PICO_PER_TOKEN_PER_USD_PER_M = 10**6  # USD per 1M tokens → pico-USD per token


def _shift(value: Decimal, places: int, *, exact: bool = True) -> Decimal:
    """``value * 10**places`` without the default context's rounding to 28 significant digits.
    Raises an ``ArithmeticError`` on overflow and, if ``exact``, instead of underflowing."""
    traps = [InvalidOperation, Overflow, Inexact, Underflow] if exact else [Overflow]
    context = Context(prec=len(value.as_tuple().digits) + 1, traps=traps)
    return value.scaleb(places, context)


class Price(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """USD per 1M tokens (``request``: USD per call). Exact decimals, never floats. A route's
    ``price`` table in the config, strict like the config's other tables."""

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    cache_read: Decimal | None = None  # default: the input price
    cache_write: Decimal | None = None  # default: the input price
    request: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not None and not value.is_finite():  # TOML has inf and nan
                raise ValueError(f"`{name}` must be a finite number, got {value}")


class Rates(NamedTuple):
    """A route's price compiled to pico-USD per token (``request``: per call)."""

    input: int
    output: int
    cache_read: int
    cache_write: int
    request: int

    @classmethod
    def from_price(cls, price: Price) -> Rates:
        def per_token(value: Decimal) -> int:
            # USD per 1M tokens → pico-USD per token; finer than that truncates (the config
            # refuses prices with more than six decimals)
            return int(_shift(value, 6, exact=False))

        return cls(
            input=per_token(price.input),
            output=per_token(price.output),
            cache_read=per_token(price.input if price.cache_read is None else price.cache_read),
            cache_write=per_token(price.input if price.cache_write is None else price.cache_write),
            request=int(_shift(price.request, 12, exact=False)),
        )

    def cost(self, usage: Usage) -> int:
        """Exact cost in pico-USD. Cached and cache-write tokens are subsets of prompt tokens."""
        uncached = max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
        return (
            uncached * self.input
            + usage.cached_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
            + usage.completion_tokens * self.output
            + self.request
        )


def usd(pico: int) -> Decimal:
    return _shift(Decimal(pico), -12)


def format_usd(pico: int, places: int = 12) -> str:
    """``1500000`` → ``"0.0000015"``: plain decimal, no exponent, trailing zeros dropped."""
    if places == 12:  # exact: integer arithmetic only (this runs on every response)
        whole, frac = divmod(abs(pico), PICO_PER_USD)
        sign = "-" if pico < 0 else ""
        return f"{sign}{whole}.{frac:012d}".rstrip("0") if frac else f"{sign}{whole}"
    text = f"{usd(pico):.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


_PLAIN = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?|[+-]?\.[0-9]+")


def parse_usd(text: str) -> int:
    """``"1.25"`` → pico-USD; refuses anything finer than a pico-dollar instead of rounding, and
    exponents: ``1e3`` typed for money is more likely a slip than a thousand dollars."""
    if not _PLAIN.fullmatch(text.strip()):
        if re.fullmatch(r"\s*[+-]?[0-9.]+[eE][+-]?[0-9]+\s*", text):
            raise ValueError(f"{text!r}: write the amount without an exponent, like 1000 or 0.25")
        raise ValueError(f"{text!r} is not a USD amount (write it like 20 or 12.50)")
    try:
        value = Decimal(text)
    except InvalidOperation:  # not a ValueError: callers expect one for any bad amount
        raise ValueError(f"{text!r} is not a USD amount") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a USD amount")
    try:
        pico = _shift(value, 12)
    except ArithmeticError:
        raise ValueError(f"{text} USD is out of range") from None
    if pico != pico.to_integral_value():
        raise ValueError(
            f"{text} USD has more than 12 decimal places (the smallest amount is "
            "0.000000000001 USD)"
        )
    return int(pico)
