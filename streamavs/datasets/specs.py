"""Data specs: the names `streamavs eval --data` takes, each a four-condition robust test set.

``synthetic-single`` | ``synthetic-multi``: the procedural benchmark's TEST split (one or
several sources per clip); ``synthetic-val``: its single-source VALIDATION split. ``real-test`` | ``real-test_seen_rec`` | ``real-test_heldout_rec``
| ``real-test_novel``: the real-media test splits (:mod:`streamavs.realmedia.bank`);
``real-unseen_offscreen``: real-media test scenes whose off-screen sound was never heard in
training; ``real-val``: the real-media VALIDATION split, for choosing between models without
looking at a test split. Real media come from ``$STREAMAVS_MEDIA`` or the default cache (``streamavs data
fetch``). These need numpy only. ``avsbench_s4:ROOT`` | ``avsbench_ms3:ROOT``: the AVSBench
test split under ROOT, read by the training package (needs the ``train`` extra).

Every set gives each clip one of positive / silence / noise / off-screen audio, 25% each,
deterministic in (`clips`, `image_size`, `seed`).
"""

from __future__ import annotations

from streamavs.errors import InputError, require

__all__ = ["SYNTHETIC_SPECS", "REAL_SPECS", "AVSBENCH_SPECS", "DATA_SPECS", "check_spec", "robust_test_set"]

SYNTHETIC_SPECS = ("synthetic-single", "synthetic-multi", "synthetic-val")
REAL_SPECS = ("real-test", "real-test_seen_rec", "real-test_heldout_rec", "real-test_novel", "real-unseen_offscreen",
              "real-val")
AVSBENCH_SPECS = ("avsbench_s4:ROOT", "avsbench_ms3:ROOT")
DATA_SPECS = (*SYNTHETIC_SPECS, *REAL_SPECS, *AVSBENCH_SPECS)


def _avsbench(spec: str) -> tuple[str, str] | None:
    """(subset "s4" | "ms3", root) for an AVSBench spec, else None."""
    kind, _, root = spec.partition(":")
    if kind in ("avsbench_s4", "avsbench_ms3") and root:
        return kind.split("_")[1], root
    return None


def check_spec(spec: str, option: str = "--data") -> str:
    """`spec` if it names a test set (before any work), else a one-line InputError listing them
    (`option`: the command-line option that gave it)."""
    if spec in SYNTHETIC_SPECS or spec in REAL_SPECS or _avsbench(spec):
        return spec
    raise InputError(f"unknown {option} {spec!r}; expected one of {' | '.join(DATA_SPECS)}")


def robust_test_set(spec: str, clips: int, image_size: int, seed: int = 0):
    """The four-condition test set named by `spec`: `clips` clips (synthetic and real specs) of
    `image_size` px square frames; a map-style data set of sample dicts (streamavs.datasets.samples)."""
    check_spec(spec)
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
        raise InputError(f"--clips must be a positive number of test clips, got {clips!r}")
    from streamavs.synthetic import SceneConfig

    if spec in SYNTHETIC_SPECS:
        from streamavs.datasets.synthetic import synthetic_test_set

        split, setting = ("val", "single") if spec == "synthetic-val" else ("test", spec.split("-")[1])
        return synthetic_test_set(split, clips, SceneConfig(image_size=image_size, setting=setting), seed=seed)
    if spec in REAL_SPECS:
        from streamavs.datasets.real import real_test_set, real_unseen_test_set

        scenes = SceneConfig(image_size=image_size)
        split = spec.removeprefix("real-")
        if split == "unseen_offscreen":
            return real_unseen_test_set(clips, scenes, seed=seed)
        return real_test_set(split, clips, scenes, seed=seed)
    subset, root = _avsbench(spec)  # type: ignore[misc]
    # AVSBench's reader lives in the training package (its log-mel pickles are torch tensors).
    require("torch", "train", f"--data {spec} (AVSBench is read by the training package)")
    from streamavs.datasets.conditions import RobustTestSet
    from streamavs.training.avsbench import AVSBench

    return RobustTestSet(AVSBench(root, subset, "test", image_size=image_size), seed=seed)
