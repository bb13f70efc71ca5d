"""Stored Responses for LMRouter (``store``, ``previous_response_id``, ``GET``/``DELETE
/v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``)."""

from lmrouter_responses.plugin import ResponsesPlugin

__all__ = ["ResponsesPlugin"]
