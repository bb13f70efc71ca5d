"""``lmrouter users``, ``lmrouter keys`` and ``lmrouter byok``: admin commands on the configured
database. A running router notices their changes within half a second."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from lmrouter import Config, Store, find_config, load, opened_store
from lmrouter_accounts import service
from lmrouter_accounts.plugin import box_for
from lmrouter_accounts.service import AccountsError

Command = Callable[[argparse.Namespace, Config, Store], Coroutine[Any, Any, None]]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    common = subparsers.common  # type: ignore[attr-defined]  # gives each leaf --config

    def leaf(group: argparse._SubParsersAction, name: str, command: Command, help: str):
        parser = group.add_parser(name, parents=[common], help=help, description=help)
        parser.set_defaults(func=lambda args: _run(command, args))
        return parser

    users = subparsers.add_parser("users", help="manage user accounts")
    actions = users.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = leaf(actions, "add", users_add, "create a user")
    add.add_argument("email")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a password from stdin (without it the user signs in with API keys only)",
    )
    add.add_argument("--admin", action="store_true", help="make the user an administrator")
    leaf(actions, "list", users_list, "list users")
    for name, command, text in (
        ("suspend", users_suspend, "refuse the user's keys (403) until resumed"),
        ("resume", users_resume, "undo suspend"),
    ):
        leaf(actions, name, command, text).add_argument("email")
    delete = leaf(
        actions,
        "delete",
        users_delete,
        "revoke every key and erase the user's personal data (cannot be undone)",
    )
    delete.add_argument("email")
    delete.add_argument(
        "--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)"
    )

    keys = subparsers.add_parser("keys", help="manage API keys")
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = leaf(actions, "create", keys_create, "create an API key (printed once)")
    create.add_argument("email")
    create.add_argument("--name", default="", help="a label to tell keys apart")
    for flag, text in (
        ("--rpm", "requests per minute"),
        ("--tpm", "tokens per minute"),
        ("--max-concurrent", "requests at the same time"),
    ):
        create.add_argument(flag, type=int, metavar="N", help=f"{text} (0: unlimited)")
    leaf(actions, "list", keys_list, "list a user's keys").add_argument("email")
    leaf(actions, "revoke", keys_revoke, "revoke a key for good").add_argument("key_id")

    byok = subparsers.add_parser("byok", help="users' own provider keys (BYOK)")
    actions = byok.add_subparsers(dest="action", metavar="ACTION", required=True)
    put = leaf(actions, "set", byok_set, "store a user's key for a provider (encrypted)")
    put.add_argument("email")
    put.add_argument("provider")
    put.add_argument(
        "--key-stdin", action="store_true", required=True, help="read the key from stdin"
    )
    remove = leaf(actions, "remove", byok_remove, "forget a user's key for a provider")
    remove.add_argument("email")
    remove.add_argument("provider")


def _run(command: Command, args: argparse.Namespace) -> int:
    config, pm = load(find_config(args.config).resolve())

    async def go() -> None:
        async with opened_store(config, pm) as store:
            args.plugin_manager = pm  # for the hooks a command triggers (users delete)
            await command(args, config, store)

    try:
        asyncio.run(go())
    except AccountsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _secret_from_stdin(prompt: str) -> str:
    """One line from stdin (the trailing newline is not part of it); a prompt on a terminal."""
    text = getpass.getpass(prompt) if sys.stdin.isatty() else sys.stdin.read()
    return text.rstrip("\r\n")


def _confirm(question: str) -> None:
    """Ask on a terminal; refuse when nobody can answer (a script must say --yes)."""
    if not sys.stdin.isatty():
        raise AccountsError("this cannot be undone: add --yes to confirm (no terminal to ask on)")
    print(question, file=sys.stderr)
    if input("Type yes to go on: ").strip().lower() != "yes":
        raise AccountsError("not confirmed: nothing changed")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# -- users --------------------------------------------------------------------------------------


async def users_add(args: argparse.Namespace, config: Config, store: Store) -> None:
    password = None
    if args.password_stdin:
        password = _secret_from_stdin("Password: ")
        if not password:
            raise AccountsError("--password-stdin: no password on stdin")
    user = await service.create_user(store, args.email, password=password, is_admin=args.admin)
    role = " (admin)" if user.is_admin else ""
    print(f"created user {user.email}{role}, id {user.id}")


async def users_list(args: argparse.Namespace, config: Config, store: Store) -> None:
    users = await service.list_users(store)
    if not users:
        print("no users")
        return
    _table(
        ("ID", "EMAIL", "STATUS", "ADMIN", "PASSWORD", "KEYS", "CREATED"),
        [
            (
                u.id,
                u.email or "-",
                u.status,
                "yes" if u.is_admin else "no",
                "yes" if u.has_password else "no",
                str(u.active_keys),
                u.created_at,
            )
            for u in users
        ],
    )


async def users_suspend(args: argparse.Namespace, config: Config, store: Store) -> None:
    user = await service.user_by_email(store, args.email)
    changed = await service.suspend_user(store, user.id)
    print(f"suspended {user.email}" if changed else f"{user.email} was already suspended")


async def users_resume(args: argparse.Namespace, config: Config, store: Store) -> None:
    user = await service.user_by_email(store, args.email)
    changed = await service.resume_user(store, user.id)
    print(f"resumed {user.email}" if changed else f"{user.email} was not suspended")


async def users_delete(args: argparse.Namespace, config: Config, store: Store) -> None:
    user = await service.user_by_email(store, args.email)
    if not args.yes:
        _confirm(
            f"Delete {user.email}? Every key stops working and the e-mail address, password "
            "and BYOK keys are erased; this cannot be undone."
        )
    revoked = await service.delete_user(store, user.id, args.plugin_manager)
    print(
        f"deleted user {user.id}: {revoked} key{'s' if revoked != 1 else ''} revoked, "
        "email, password and BYOK keys erased"
    )


# -- keys ---------------------------------------------------------------------------------------


async def keys_create(args: argparse.Namespace, config: Config, store: Store) -> None:
    user = await service.user_by_email(store, args.email)
    new = await service.create_key(
        store,
        user.id,
        name=args.name,
        rpm=args.rpm,
        tpm=args.tpm,
        max_concurrent=args.max_concurrent,
    )
    key = new.key
    limits = ", ".join(f"{k}={v}" for k, v in key.limits.items()) or "defaults"
    print(f"created key {key.id} ({key.prefix}…) for {user.email}")
    print(f"name: {key.name or '-'}; limits: {limits}")
    if user.status != "active":
        print(f"note: {user.email} is {user.status}: the key works once the user is resumed")
    print("the key is shown only now; store it safely:", file=sys.stderr)
    sys.stderr.flush()
    print(new.secret)  # alone on the last line, for scripts


async def keys_list(args: argparse.Namespace, config: Config, store: Store) -> None:
    user = await service.user_by_email(store, args.email)
    found = await service.list_keys(store, user.id)
    if not found:
        print(f"{user.email} has no keys")
        return
    _table(
        ("ID", "PREFIX", "NAME", "LIMITS", "CREATED", "LAST USED", "REVOKED"),
        [
            (
                k.id,
                k.prefix + "…",
                k.name or "-",
                ",".join(f"{n}={v}" for n, v in k.limits.items()) or "-",
                k.created_at,
                k.last_used_at or "never",
                k.revoked_at or "-",
            )
            for k in found
        ],
    )


async def keys_revoke(args: argparse.Namespace, config: Config, store: Store) -> None:
    before = await service.get_key(store, args.key_id.strip())
    key = await service.revoke_key(store, args.key_id.strip())
    if before is not None and before.revoked_at is not None:
        print(f"key {key.id} ({key.prefix}…) was already revoked at {key.revoked_at}")
    else:
        print(f"revoked key {key.id} ({key.prefix}…)")


# -- BYOK ---------------------------------------------------------------------------------------


async def byok_set(args: argparse.Namespace, config: Config, store: Store) -> None:
    user = await service.user_by_email(store, args.email)
    box = box_for(config)
    service.check_byok_target(box, args.provider, providers=config.providers)
    key = _secret_from_stdin(f"{args.provider} key: ")
    await service.set_byok(store, box, user.id, args.provider, key, providers=config.providers)
    print(f"stored {user.email}'s own key for {args.provider} (encrypted)")


async def byok_remove(args: argparse.Namespace, config: Config, store: Store) -> None:
    user = await service.user_by_email(store, args.email)
    await service.remove_byok(store, user.id, args.provider)
    print(f"removed {user.email}'s own key for {args.provider}")
