"""StreamAVS training (installed as `streamavs.training`): datasets, negatives, losses, trainer, export.

Needs the `train` extra. The runtime package `streamavs` never imports this package.
"""
