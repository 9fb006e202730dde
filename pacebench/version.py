"""The package version, in a module of its own so that any module can read it without importing the package's
`__init__` (which lazily imports the heavy public functions: a module they import must not import it back)."""

__version__ = "0.1.0"
