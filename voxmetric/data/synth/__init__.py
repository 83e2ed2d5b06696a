"""The built-in synthetic corpus: speech (:mod:`.speech`), channels (:mod:`.channel`) and the
corpus writer (:mod:`.corpus`, :func:`synthesize`)."""

from .corpus import synthesize

__all__ = ["synthesize"]
