from __future__ import annotations

import msgspec


class ResponsesConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[responses]``: how long stored Responses are kept (days); 0 keeps none."""

    store_days: int = 30
    sweep_interval_s: float = 3600.0  # how often expired rows are deleted

    def __post_init__(self) -> None:
        if self.store_days < 0:
            raise msgspec.ValidationError("store_days must be 0 or more")
