"""Capture: the sources a run reads and the builders that pair them with their rings.

* :mod:`~streamavs.capture.base`: :class:`Source`, the thread that fills the rings and stores its error.
* :mod:`~streamavs.capture.media`, :mod:`~streamavs.capture.camera`,
  :mod:`~streamavs.capture.microphone`, :mod:`~streamavs.capture.synthetic_live`: the sources.
* :mod:`~streamavs.capture.builders`: :class:`Capture` (sources + rings + how to read them) and
  the builders ``media_capture``, ``live_capture``, ``synthetic_capture``.

Importing this package imports nothing; a builder imports a source's module only when it builds
that source.
"""
