"""Moved to :mod:`streamavs.threads`; this name stays only until training/temporal_trainer.py imports it from there."""

from streamavs.threads import limit_blas_threads

__all__ = ["limit_blas_threads"]
