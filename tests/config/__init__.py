"""Tests for bext.config."""
