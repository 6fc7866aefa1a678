"""Helpers for tests of flotilla services: real servers and processes on loopback, no fakes."""
