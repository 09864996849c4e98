"""Placeholder: the engine entry point is being written; see convert() below for the contract."""
