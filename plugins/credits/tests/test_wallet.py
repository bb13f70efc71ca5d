"""The in-memory wallet and the fee: plain arithmetic, no database."""

from __future__ import annotations

from decimal import Decimal

from lmrouter_credits.wallet import Fee, Wallet

NOW = 1_000_000


def test_available_is_unexpired_remaining_minus_holds() -> None:
    wallet = Wallet([[NOW + 10, 1, 500], [NOW - 1, 2, 700], [NOW + 20, 3, 300]], NOW)
    assert wallet.balance == 800  # lot 2 expired already
    wallet.held = 100
    assert wallet.available(NOW) == 700


def test_a_lot_stops_counting_the_moment_it_expires() -> None:
    wallet = Wallet([[NOW + 10, 1, 500], [NOW + 20, 2, 300]], NOW)
    assert wallet.available(NOW + 9) == 800
    assert wallet.available(NOW + 10) == 300  # expiry is "at or before"
    assert wallet.available(NOW + 20) == 0


def test_draw_takes_the_earliest_expiring_lot_first() -> None:
    wallet = Wallet([[NOW + 30, 1, 100], [NOW + 10, 2, 100], [NOW + 20, 3, 100]], NOW)
    assert wallet.draw(150, NOW) == 150
    assert {lot[1]: lot[2] for lot in wallet.lots} == {3: 50, 1: 100}
    assert wallet.balance == 150


def test_draw_never_takes_more_than_there_is() -> None:
    wallet = Wallet([[NOW + 10, 1, 100]], NOW)
    assert wallet.draw(250, NOW) == 100
    assert wallet.balance == 0
    assert wallet.available(NOW) == 0


def test_reset_replays_charges_not_written_yet() -> None:
    wallet = Wallet([[NOW + 10, 1, 100], [NOW + 20, 2, 100]], NOW)
    wallet.draw(30, NOW)
    wallet.unflushed[1] = (30, NOW)
    # the database does not have the charge yet, but has a new lot
    wallet.reset([[NOW + 10, 1, 100], [NOW + 20, 2, 100], [NOW + 5, 3, 50]], NOW + 1)
    # replayed against the new lots, earliest expiry first: lot 3 pays 30
    assert {lot[1]: lot[2] for lot in wallet.lots} == {3: 20, 1: 100, 2: 100}
    assert wallet.balance == 220


def test_replay_uses_the_lots_that_were_valid_when_the_request_ended() -> None:
    # charged at NOW, when lot 1 was still valid; reloaded after it expired
    wallet = Wallet([], NOW)
    wallet.unflushed[1] = (40, NOW)
    wallet.reset([[NOW + 5, 1, 100], [NOW + 50, 2, 100]], NOW + 10)
    assert wallet.balance == 100  # lot 1 paid (and then expired); lot 2 is untouched


def test_fee_is_exact_and_rounds_down() -> None:
    assert Fee(Decimal(0)).of(10**12) == 0
    assert Fee(Decimal("2.5")).of(1000) == 25
    assert Fee(Decimal("2.5")).of(1001) == 25  # 25.025 → 25
    assert Fee(Decimal("0.001")).of(10**12) == 10**7
    assert Fee(Decimal(100)).of(12345) == 12345
