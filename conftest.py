"""Puts this checkout first on sys.path, so tests import the tree they live in."""
