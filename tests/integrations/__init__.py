"""Tests of faultlens.integrations."""
