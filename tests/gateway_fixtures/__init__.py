"""Test-only helpers for the gateway tests: a contract-following KServe model server and a Feast repo."""
