"""Entrypoint of the ``radas/sweep`` deployment: the ``radas`` flow itself, re-exported."""

from radas_flows.flows import radas

__all__ = ["radas"]
