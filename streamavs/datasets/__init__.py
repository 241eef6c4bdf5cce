"""Sample sets in the AVSBench per-second format, numpy only: what training and evaluation read.

- :mod:`.samples`: the sample dict (frame, log-mel, masks, condition, ...).
- :mod:`.synthetic`: the procedural benchmark's clips as per-second or per-clip samples.
- :mod:`.real`: the same over the real-media bank (photographs and recordings).
- :mod:`.negatives`: negative audio (silence, controlled noise, off-screen sound) as raw 16 kHz waveforms.
- :mod:`.conditions`: the four audio conditions: the balanced robust test set and the
  training negative sampler, over any set that follows the clip dataset protocol.
- :mod:`.streaming`: the streaming test split of the temporal ablation (whole clips, state
  changes and negative seconds).
- :mod:`.specs`: the data specs of ``streamavs eval --data`` (``synthetic-single``, ``real-test``, ...).

The sets are map-style (``len`` and ``[index]``): the training package hands them to a torch
DataLoader, the engine evaluation (:mod:`streamavs.evaluation`) loops over them without torch.
Importing this package imports only :mod:`.specs` (cheap, for the command line); the set
modules import OpenCV (through streamavs.synthetic).
"""

from streamavs.datasets.specs import DATA_SPECS, check_spec, robust_test_set

__all__ = ["DATA_SPECS", "check_spec", "robust_test_set"]
