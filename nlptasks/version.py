"""The version of nlptasks, in a module of its own so any part can read it without importing
the package's public API."""

__version__ = "0.1.0"
