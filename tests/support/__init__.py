"""Test doubles and builders shared by the sync and integration tests (owned by the tests)."""
