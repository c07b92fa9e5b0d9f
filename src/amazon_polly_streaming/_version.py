"""The package's version: a leaf, so that the session can name it without importing the client."""

__version__ = "2.0.0.dev0"
