"""Shared test helpers: references and real-traffic drivers, imported by test
modules (never one test module from another)."""
