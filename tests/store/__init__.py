"""Tests of faultlens.store, run against SQLite and PostgreSQL alike."""
