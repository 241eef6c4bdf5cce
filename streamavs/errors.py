"""The one exception hierarchy of StreamAVS.

Every error raised on purpose derives from :class:`StreamAVSError`. Messages say what
was expected, what arrived, and how to fix it; the CLI prints them as one line and
exits non-zero.
"""

from __future__ import annotations


class StreamAVSError(Exception):
    """Base of every error StreamAVS raises on purpose."""

    exit_code = 2


class InputError(StreamAVSError, ValueError):
    """Bad user input: a wrong shape, dtype, sample rate, option or file."""


class ConfigError(StreamAVSError, ValueError):
    """A configuration file or dataclass that cannot be used."""


class DataError(StreamAVSError):
    """A dataset on disk that is missing files or has the wrong layout."""


class SourceError(StreamAVSError):
    """A capture source (camera, microphone, media file or URL) that failed."""


class EngineError(StreamAVSError):
    """An engine that cannot be loaded or run."""


class ManifestMismatch(EngineError):
    """An engine whose manifest disagrees with the runtime or its own model file."""


class ProtocolError(StreamAVSError):
    """A mask-stream message that does not follow wire protocol v1."""


class MissingDependency(StreamAVSError, ImportError):
    """An optional dependency that is not installed; the message names the extra."""


def require(module: str, extra: str, purpose: str):
    """Import `module` lazily, or raise MissingDependency naming the pip extra to install.

    >>> torch = require("torch", "train", "training")  # doctest: +SKIP
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{purpose} needs the Python package '{module}', which is not installed "
            f"({exc}); install it with: pip install 'streamavs[{extra}]'"
        ) from exc
