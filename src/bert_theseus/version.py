"""The package's version, in a module of its own: the files a run writes name it, and
the modules that write them sit below the package's `__init__` (which loads the methods)."""

__version__ = "0.1.0"
