"""Shared memory between the master and its workers: numbers only, never names."""
