"""StreamAVS: real-time segmentation of the objects that are making the sound.

Importing this package has no side effects and imports no heavy dependency; each
submodule imports what it needs.
"""

__version__ = "0.1.0"
