"""The package's version, declared once: ``pyproject.toml`` reads it, and so does the client's
User-Agent."""

__version__ = "0.2.0"
