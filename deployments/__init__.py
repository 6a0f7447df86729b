"""Deployable entrypoints, parameter presets and the nightly suite of radas_flows."""
