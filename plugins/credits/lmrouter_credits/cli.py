"""``lmrouter credits grant | show | sweep``: work on the configured database directly. A server
running on the same database picks the change up within half a second."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lmrouter import CommandError, find_config, format_usd, load, opened_store, parse_usd
from lmrouter_credits import clock, service

if TYPE_CHECKING:
    from lmrouter import Store
    from lmrouter_credits.config import CreditsConfig


def add_commands(subparsers: Any) -> None:
    credits = subparsers.add_parser(
        "credits",
        parents=[subparsers.common],
        help="grant, show and expire prepaid credits",
        description="Prepaid credits: lots that expire [credits] expire_after_days after they "
        "were bought or granted, spent earliest-expiry first. The commands work on the "
        "configured database; a running router sees a change within half a second.",
    )
    # --config is accepted after the subcommand too; SUPPRESS keeps an absent one from
    # overwriting a value given before it
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS)
    actions = credits.add_subparsers(dest="credits_command", metavar="ACTION", required=True)

    grant = actions.add_parser(
        "grant",
        parents=[config],
        help="give a user credits",
        description="Give a user a lot of USD credits (exact decimals, no exponents), expiring "
        "[credits] expire_after_days after --purchased-at.",
    )
    grant.add_argument("email")
    grant.add_argument("usd", metavar="USD", help="amount, a decimal number of US dollars")
    grant.add_argument("--note", help="why (kept in the ledger)")
    grant.add_argument(
        "--purchased-at",
        metavar="ISO-8601",
        help="when the credits count from (default: now); they expire [credits] "
        "expire_after_days later",
    )
    grant.set_defaults(func=_command(cmd_grant))

    show = actions.add_parser(
        "show",
        parents=[config],
        help="a user's balance and lots",
        description="A user's balance and every credit lot: source, amount, what remains, "
        "when it was bought and when it expires.",
    )
    show.add_argument("email")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_command(cmd_show))

    sweep = actions.add_parser(
        "sweep",
        parents=[config],
        help="expire lots past their expiry",
        description="Expire every lot whose expiry is at or before --as-of (default: now): "
        "what remained of it is recorded in the ledger as expired.",
    )
    sweep.add_argument(
        "--as-of",
        metavar="ISO-8601",
        help="expire lots whose expiry is at or before this time (default: now)",
    )
    sweep.set_defaults(func=_command(cmd_sweep))


Command = Callable[[argparse.Namespace, "Store", "CreditsConfig"], Awaitable[int | None]]


def _command(fn: Command) -> Callable[[argparse.Namespace], int | None]:
    """Load the config, open (and migrate) the store, run ``fn``, close."""

    def run(args: argparse.Namespace) -> int | None:
        config, pm = load(find_config(args.config).resolve())
        settings = config.section("credits")

        async def go() -> int | None:
            async with opened_store(config, pm) as store:
                return await fn(args, store, settings)

        return asyncio.run(go())

    return run


async def _user(store: Store, email: str) -> str:
    user_id = await service.user_id_for_email(store, email)
    if user_id is None:
        raise CommandError(f"no user {email!r} (see `lmrouter users list`)")
    return user_id


def _when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        return clock.parse(text)
    except ValueError as exc:
        raise CommandError(f"{flag}: {exc}") from None


async def cmd_grant(args: argparse.Namespace, store: Store, settings: CreditsConfig) -> int:
    try:
        amount = parse_usd(args.usd)
    except ValueError as exc:
        raise CommandError(f"USD: {exc}") from None
    if amount <= 0:
        raise CommandError("USD: a grant must be a positive amount")
    user_id = await _user(store, args.email)
    try:
        lot = await service.grant(
            store,
            user_id,
            amount,
            note=args.note,
            purchased_at=_when(args.purchased_at, "--purchased-at"),
            expire_after_days=settings.expire_after_days,
        )
    except ValueError as exc:
        raise CommandError(f"--purchased-at: {exc}") from None
    balance = await service.balance(store, user_id)
    print(
        f"granted {format_usd(lot.amount_pico)} USD to {args.email} (lot {lot.id}, "
        f"expires {lot.expires_at}); balance {format_usd(balance)} USD. A running router "
        "sees it within half a second."
    )
    return 0


async def cmd_show(args: argparse.Namespace, store: Store, settings: CreditsConfig) -> int:
    user_id = await _user(store, args.email)
    summary = await service.summary(store, user_id)
    data = summary.to_json()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{args.email}: balance {data['balance_usd']} USD")
    if not data["lots"]:
        print("no credit lots")
        return 0
    # source: grant or purchase; ref: where a purchase came from (the Stripe Checkout Session)
    header = ("lot", "source", "ref", "amount", "remaining", "purchased", "expires")
    rows = [
        (
            str(lot["id"]),
            lot["source"],
            lot["source_ref"] or "-",
            lot["amount_usd"],
            lot["remaining_usd"],
            lot["purchased_at"][:19] + "Z",
            lot["expires_at"][:19] + "Z" + (" (expired)" if lot["expired"] else ""),
        )
        for lot in data["lots"]
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


async def cmd_sweep(args: argparse.Namespace, store: Store, settings: CreditsConfig) -> int:
    try:
        expired = await service.sweep(store, as_of=_when(args.as_of, "--as-of"))
    except ValueError as exc:
        raise CommandError(f"--as-of: {exc}") from None
    total = sum(e.amount_pico for e in expired)
    users = len({e.user_id for e in expired})
    print(f"expired {len(expired)} lots of {users} users: {format_usd(total)} USD")
    return 0
