"""One-line errors for bad checkpoints: empty, truncated, foreign or unsafe files and weights that do not fit.

Each case asserts the one line naming the file and what it should be, exit status 2 and no
traceback (the helpers and the STREAMAVS_DEBUG=0 fixture are test_cli_errors's).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli_errors import _no_debug, cli, in_process, one_error_line  # noqa: F401 - _no_debug: autouse fixture

EXPECTED = "expected a .pt checkpoint written by `streamavs train`"


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory) -> dict[str, Path]:
    torch = pytest.importorskip("torch", reason="checkpoints need torch (the train extra)")
    import datetime

    d = tmp_path_factory.mktemp("checkpoints")
    (d / "empty.pt").write_bytes(b"")
    whole = d / "whole.pt"
    torch.save({"format_version": 1, "model_config": {}, "state_dict": {"w": torch.zeros(4096)}}, whole)
    (d / "truncated.pt").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (d / "noise.pt").write_bytes(b"this is not a pickle at all")
    torch.save({"weights": torch.zeros(2)}, d / "foreign.pt")
    torch.save({"format_version": 1, "model_config": {}, "state_dict": {}, "when": datetime.date(2026, 1, 1)},
               d / "object.pt")  # fmt: skip
    return {p.stem: p for p in d.iterdir()}


CHECKPOINT_CASES = {
    "empty": "is empty (0 bytes); " + EXPECTED,
    "truncated": "cannot be read (the file ends early: it is truncated); " + EXPECTED,
    "noise": "cannot be read (it is not a file written by torch.save); " + EXPECTED,
    "foreign": "is not a StreamAVS checkpoint: it holds a dict with keys ['weights'], not the keys "
               "['format_version', 'model_config', 'state_dict']; " + EXPECTED,
    "object": "cannot be read (it holds a Python object of type datetime.date, which is not allowed in a "
              "checkpoint); " + EXPECTED,
}


@pytest.mark.parametrize("command", ["eval", "export", "run"])
@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_bad_checkpoints(capsys, tmp_path, bad_checkpoints, command, case):
    path = bad_checkpoints[case]
    args = {
        "eval": ["eval", "--checkpoint", path],
        "export": ["export", path, "--out", tmp_path / "engines"],
        "run": ["run", "--engine", path, "--synthetic", "--frames", "1", "--publish", "tcp://127.0.0.1:*"],
    }[command]
    line = in_process(capsys, *args)
    assert line == f"streamavs: error: checkpoint {path} {CHECKPOINT_CASES[case]} (exported engines are .json/.onnx files)" + (
        ": copy or write it again" if case == "empty" else ""
    )
    assert "weights_only" not in line  # never PyTorch's advice to unpickle arbitrary code
    assert not (tmp_path / "engines").exists()


@pytest.mark.slow  # moved from the default step (2026-12-01) to keep it under 5 minutes
def test_empty_and_truncated_checkpoints_in_a_real_process(bad_checkpoints):
    # The empty file used to print click's bare "Aborted." (an EOFError) and exit 1.
    code, _, err = cli("eval", "--checkpoint", bad_checkpoints["empty"])
    assert "is empty (0 bytes)" in one_error_line(code, err) and "Aborted" not in err
    code, _, err = cli("run", "--engine", bad_checkpoints["truncated"], "--synthetic", "--frames", "1",
                       "--publish", "tcp://127.0.0.1:*")  # fmt: skip
    line = one_error_line(code, err)
    assert "the file ends early: it is truncated" in line and EXPECTED in line
    assert "PytorchStreamReader" not in err


def test_checkpoint_whose_weights_do_not_fit_its_model(capsys, tmp_path):
    torch = pytest.importorskip("torch", reason="checkpoints need torch (the train extra)")
    from streamavs.model.config import ModelConfig

    path = tmp_path / "mixed.pt"
    config = ModelConfig(image_size=64, backbone_pretrained=False).to_dict()
    torch.save({"format_version": 1, "model_config": config, "state_dict": {"w": torch.zeros(1)}}, path)
    line = in_process(capsys, "eval", "--checkpoint", path)
    assert line.startswith(f"streamavs: error: checkpoint {path}: its weights do not fit the model its model_config describes")
    assert "the file was modified or mixed up: " + EXPECTED in line
