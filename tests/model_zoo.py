"""Small seeded Keras models, one per feature, shared by the reader's and the writers' tests.

Every ``build_<feature>()`` returns a fresh, built ``keras.Model`` whose weights come from a seeded
numpy generator (non-zero biases, non-trivial BatchNorm statistics), sized at most a few thousand
neurons. Inputs are meant to lie in [0, 1]: use :func:`sample_input`.
"""

from __future__ import annotations

import functools
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers as L  # noqa: E402

# Zero initializers: randomize() sets every weight anyway, and JAX would compile a random
# generator for each new weight shape (seconds per layer on a 2-core machine).
Conv1D = functools.partial(L.Conv1D, kernel_initializer="zeros")
Conv2D = functools.partial(L.Conv2D, kernel_initializer="zeros")
Dense = functools.partial(L.Dense, kernel_initializer="zeros")
DepthwiseConv1D = functools.partial(L.DepthwiseConv1D, depthwise_initializer="zeros")
DepthwiseConv2D = functools.partial(L.DepthwiseConv2D, depthwise_initializer="zeros")

HOSTILE_NAMES = (
    'quo"te',
    "apo'strophe\\back",
    "new\nline",
    "{braces}",
    "__import__('os').system('echo pwned')",
    "ünïcødé 名前 ✓",
)


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give every weight a seeded value: Glorot-like kernels, small non-zero biases, real BN stats."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        values = []
        for v in layer.weights:
            shape, name = tuple(v.shape), v.name
            if name == "bias":
                a = rng.uniform(-0.1, 0.2, shape)
            elif name == "gamma":
                a = rng.uniform(0.5, 1.5, shape)
            elif name == "beta":
                a = rng.uniform(-0.2, 0.2, shape)
            elif name == "moving_mean":
                a = rng.uniform(-0.3, 0.3, shape)
            elif name == "moving_variance":
                a = rng.uniform(0.3, 2.0, shape)
            else:
                fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
                lim = np.sqrt(6.0 / (fan_in + shape[-1]))
                a = rng.uniform(-lim, lim, shape)
            values.append(a.astype(np.float32))
        if values:
            layer.set_weights(values)
    return model


def _all_layers(model: keras.Model) -> list[L.Layer]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(_all_layers(layer))
    return out


def sample_input(model: keras.Model, n: int = 4, seed: int = 1) -> np.ndarray:
    """n samples in [0, 1) of the model's input shape, float32."""
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).uniform(0, 1, (n,) + shape).astype(np.float32)


def build_lenet() -> keras.Model:
    """Sequential LeNet-ish: 16x16x1 → conv5 relu → maxpool2 → conv3 relu → maxpool2 → flatten → dense relu → dense softmax."""
    m = keras.Sequential([
        keras.Input((16, 16, 1)),
        Conv2D(4, 5, activation="relu", name="conv1"),
        L.MaxPooling2D(2, name="pool1"),
        Conv2D(8, 3, activation="relu", name="conv2"),
        L.MaxPooling2D(2, name="pool2"),
        L.Flatten(name="flatten"),
        L.Dropout(0.5, name="dropout"),
        Dense(16, activation="relu", name="fc1"),
        Dense(10, activation="softmax", name="out"),
    ], name="lenet")
    return randomize(m, 1)


def build_binary(mode: str = "sign") -> keras.Model:
    """Binary activations (snnexport's BinaryActivation) behind batch-norm, a max-pool on them, softmax out."""
    from snnexport.keras_layers import BinaryActivation
    m = keras.Sequential([
        keras.Input((10, 10, 1)),
        L.Conv2D(4, 3, use_bias=False, name="conv1"), L.BatchNormalization(name="bn1"),
        BinaryActivation(mode, name="bin1"),
        L.MaxPooling2D(2, name="pool1"),
        L.Flatten(name="flatten"),
        Dense(12, name="fc1"), BinaryActivation(mode, name="bin2"),
        Dense(5, activation="softmax", name="out"),
    ], name=f"binary_{mode}")
    return randomize(m, 5)


def build_inception() -> keras.Model:
    """Functional inception-style block on 8x8x3: 1x1, 3x3 same, 5x5 same and maxpool→1x1 branches, concatenated on channels."""
    x = keras.Input((8, 8, 3), name="image")
    b1 = Conv2D(3, 1, activation="relu", name="b1x1")(x)
    b2 = Conv2D(2, 1, activation="relu", name="b3x3_reduce")(x)
    b2 = Conv2D(4, 3, padding="same", activation="relu", name="b3x3")(b2)
    b3 = Conv2D(2, 5, padding="same", activation="relu", name="b5x5")(x)
    b4 = L.MaxPooling2D(3, strides=1, padding="same", name="bpool")(x)
    b4 = Conv2D(2, 1, activation="relu", name="bpool_proj")(b4)
    y = L.Concatenate(name="mixed")([b1, b2, b3, b4])
    y = Conv2D(4, 3, strides=2, activation="relu", name="after")(y)
    y = L.Flatten(name="flat")(y)
    y = Dense(5, name="logits")(y)
    return randomize(keras.Model(x, y, name="inception"), 2)


def build_residual() -> keras.Model:
    """Residual block on 8x8x3: conv1x1 relu → (conv3 same relu → conv3 same) + skip → ReLU → global avg pool → dense."""
    x = keras.Input((8, 8, 3), name="x")
    h = Conv2D(4, 1, activation="relu", name="stem")(x)
    r = Conv2D(4, 3, padding="same", activation="relu", name="res_a")(h)
    r = Conv2D(4, 3, padding="same", name="res_b")(r)
    y = L.Add(name="add")([h, r])
    y = L.ReLU(name="add_relu")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    y = Dense(3, activation="softmax", name="out")(y)
    return randomize(keras.Model(x, y, name="residual"), 3)


def build_conv1d() -> keras.Model:
    """1-D net on (32, 2): causal dilated Conv1D → strided 'same' Conv1D → MaxPool1D → AvgPool1D same → DepthwiseConv1D → GlobalMaxPool1D → dense."""
    m = keras.Sequential([
        keras.Input((32, 2)),
        Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu", name="causal"),
        Conv1D(6, 4, strides=2, padding="same", activation="relu", name="strided"),
        L.MaxPooling1D(2, name="mp1"),
        L.AveragePooling1D(3, strides=2, padding="same", name="ap1"),
        Conv1D(4, 2, name="valid1d"),
        DepthwiseConv1D(2, depth_multiplier=2, name="dw1d"),
        L.GlobalMaxPooling1D(name="gmp"),
        Dense(3, name="out"),
    ], name="conv1d")
    return randomize(m, 4)


def build_depthwise() -> keras.Model:
    """DepthwiseConv2D (depth_multiplier 2, stride 2, same) on 9x9x3 → pointwise conv → flatten → dense."""
    m = keras.Sequential([
        keras.Input((9, 9, 3)),
        DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu", name="dw"),
        Conv2D(4, 1, activation="relu", name="pw"),
        DepthwiseConv2D(2, use_bias=False, name="dw_nobias"),
        L.Flatten(name="flat"),
        Dense(4, name="out"),
    ], name="depthwise")
    return randomize(m, 5)


def build_zero_padding() -> keras.Model:
    """Asymmetric ZeroPadding2D ((1,2),(0,3)) on 7x7x2 → conv3 stride 2 → ZeroPadding2D 1 → avgpool2 → flatten → dense."""
    m = keras.Sequential([
        keras.Input((7, 7, 2)),
        L.ZeroPadding2D(((1, 2), (0, 3)), name="pad_asym"),
        Conv2D(3, 3, strides=2, activation="relu", name="conv"),
        L.ZeroPadding2D(1, name="pad1"),
        L.AveragePooling2D(2, name="avg"),
        L.Flatten(name="flat"),
        Dense(4, name="out"),
    ], name="zero_padding")
    return randomize(m, 6)


def build_maxpool_stride() -> keras.Model:
    """MaxPool geometry on 11x11x2: conv → maxpool 3 stride 2 same → maxpool 2 stride 3 valid → flatten → dense."""
    m = keras.Sequential([
        keras.Input((11, 11, 2)),
        Conv2D(4, 3, activation="relu", name="conv"),
        L.MaxPooling2D(3, strides=2, padding="same", name="mp_same"),
        L.MaxPooling2D(2, strides=3, name="mp_s3"),
        L.Flatten(name="flat"),
        Dense(4, name="out"),
    ], name="maxpool_stride")
    return randomize(m, 7)


def build_avgpool() -> keras.Model:
    """AvgPool geometry on 10x10x2: conv same → avgpool 3 stride 2 same (edge windows divide by real cells) → avgpool (2,3) stride 1 → flatten → dense."""
    m = keras.Sequential([
        keras.Input((10, 10, 2)),
        Conv2D(3, 3, padding="same", activation="relu", name="conv"),
        L.AveragePooling2D(3, strides=2, padding="same", name="ap_same"),
        L.AveragePooling2D((2, 3), strides=1, name="ap_s1"),
        L.Flatten(name="flat"),
        Dense(4, name="out"),
    ], name="avgpool")
    return randomize(m, 8)


def build_batchnorm() -> keras.Model:
    """BatchNormalization before an activation (conv → BN → ReLU) and after one (conv relu → BN), plus BN on a dense layer."""
    m = keras.Sequential([
        keras.Input((8, 8, 3)),
        Conv2D(4, 3, name="conv1"),
        L.BatchNormalization(name="bn1"),
        L.ReLU(name="relu1"),
        Conv2D(4, 3, activation="relu", use_bias=False, name="conv2"),
        L.BatchNormalization(epsilon=1e-2, name="bn2"),
        L.Flatten(name="flat"),
        Dense(8, name="fc"),
        L.BatchNormalization(center=False, name="bn3"),
        L.Activation("relu", name="fc_relu"),
        Dense(3, activation="softmax", name="out"),
    ], name="batchnorm")
    return randomize(m, 9)


def build_geometry() -> keras.Model:
    """Conv geometry on 13x13x2: 'same' with even kernels (2x2 stride 2, 4x4 stride 1), 'valid' stride 3, non-square kernel/strides."""
    m = keras.Sequential([
        keras.Input((13, 13, 2)),
        Conv2D(3, 2, strides=2, padding="same", activation="relu", name="even_s2"),
        Conv2D(3, 4, padding="same", activation="relu", name="even_s1"),
        Conv2D(4, (2, 3), strides=(1, 2), padding="same", activation="relu", name="rect"),
        Conv2D(4, 3, strides=3, name="valid_s3"),
        L.Flatten(name="flat"),
        Dense(3, name="out"),
    ], name="geometry")
    return randomize(m, 10)


def build_dilation() -> keras.Model:
    """Dilated and grouped convolutions on 12x12x4: dilation 2 'same', dilation (1,3) 'valid', groups 2."""
    m = keras.Sequential([
        keras.Input((12, 12, 4)),
        Conv2D(4, 3, dilation_rate=2, padding="same", activation="relu", name="dil2"),
        Conv2D(6, 2, dilation_rate=(1, 3), activation="relu", name="dil13"),
        Conv2D(4, 3, groups=2, name="grouped"),
        L.Flatten(name="flat"),
        Dense(3, name="out"),
    ], name="dilation")
    return randomize(m, 11)


def build_misc() -> keras.Model:
    """Rescaling, Normalization, ReLU(max_value), Reshape, Dense on a rank-3 tensor, GlobalMaxPool2D keepdims, 1-D Concatenate on the length axis, Softmax layer, noise/dropout no-ops."""
    x = keras.Input((6, 6, 2), name="pixels")
    y = L.Rescaling(2.0, offset=-0.5, name="rescale")(x)
    y = L.Normalization(mean=[0.2, -0.1], variance=[0.5, 2.0], name="normalize")(y)
    y = L.GaussianNoise(0.1, name="noise")(y)
    y = Dense(5, name="dense_rank3")(y)  # acts on the last axis of (6, 6, 2)
    y = L.ReLU(max_value=0.8, name="relu_cap")(y)
    y = L.SpatialDropout2D(0.2, name="sdrop")(y)
    y = L.GlobalMaxPooling2D(keepdims=True, name="gmp")(y)
    y = L.Reshape((5,), name="squeeze")(y)
    y = Dense(12, activation="relu", name="fc")(y)
    y = L.Reshape((4, 3), name="to_seq")(y)
    a = Conv1D(2, 2, name="seq_conv")(y)
    b = Conv1D(2, 2, activation="relu", name="seq_conv_b")(y)
    y = L.Concatenate(axis=1, name="seq_cat")([a, b])  # along the length axis of (L, C)
    y = L.Flatten(name="flat")(y)
    y = Dense(4, name="logits")(y)
    y = L.Softmax(name="probs")(y)
    return randomize(keras.Model(x, y, name="misc"), 12)


def build_nested() -> keras.Model:
    """A Sequential sub-model (conv → pool) used as one layer inside a functional model."""
    inner = keras.Sequential([
        keras.Input((8, 8, 2)),
        Conv2D(3, 3, padding="same", activation="relu", name="inner_conv"),
        L.AveragePooling2D(2, name="inner_pool"),
    ], name="block")
    x = keras.Input((8, 8, 2), name="inp")
    y = inner(x)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    y = Dense(3, name="out")(y)
    return randomize(keras.Model(x, y, name="nested"), 13)


def build_hostile_names() -> keras.Model:
    """Tiny conv net whose layer names hold quotes, a backslash, a newline, braces, code and non-ASCII."""
    n = HOSTILE_NAMES
    m = keras.Sequential([
        keras.Input((6, 6, 1)),
        Conv2D(2, 3, activation="relu", name=n[0]),
        L.MaxPooling2D(2, name=n[1]),
        L.Flatten(name=n[2]),
        Dense(4, activation="relu", name=n[3]),
        Dense(3, name=n[4]),
        L.Softmax(name=n[5]),
    ], name="hostile")
    return randomize(m, 14)


def build_branches() -> keras.Model:
    """Functional, convertible: Concatenate of two conv branches, a residual Add, a max-pool gate, concatenated flats."""
    x = keras.Input((7, 7, 2), name="pixels")
    left = L.Conv2D(3, 3, padding="same", activation="relu", name="left")(x)
    right = L.Conv2D(2, 1, activation="relu", name="right")(x)
    joined = L.Concatenate(name="joined")([left, right])
    mixed = L.Conv2D(5, 3, padding="same", name="mixed")(joined)
    summed = L.ReLU(name="summed")(L.Add(name="plus")([mixed, L.Conv2D(5, 1, name="skip")(joined)]))
    pooled = L.MaxPooling2D(3, strides=2, name="pooled")(summed)
    flat = L.Concatenate(name="flat_cat")([L.Flatten(name="f1")(pooled), L.Flatten(name="f2")(right)])
    return randomize(keras.Model(x, L.Dense(4, name="logits")(flat), name="branches"), 31)


def build_sequence() -> keras.Model:
    """Conv1D, convertible: causal dilated → strided 'same' → MaxPool1D (stride ≠ pool) → AvgPool1D → dense."""
    return randomize(keras.Sequential([
        keras.Input((20, 3)),
        L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu", name="causal"),
        L.Conv1D(6, 3, strides=2, padding="same", activation="relu", name="strided"),
        L.MaxPooling1D(3, strides=2, name="mp"),
        L.AveragePooling1D(2, padding="same", name="ap"),
        L.Flatten(name="flat"),
        L.Dense(3, activation="softmax", name="out"),
    ], name="sequence"), 32)


def build_pooled_blocks() -> keras.Model:
    """The max-pools of keras.applications, on 10x10x2: ResNet's stem (BN → ReLU → ZeroPadding → MaxPool),
    Inception's MaxPool of a Concatenate (one branch a SeparableConv2D), a MaxPool of an Average of ReLUs and
    a MaxPool after ReLU → BatchNormalization (positive scale), whose ReLU rectifies a Subtract."""
    x = keras.Input((10, 10, 2), name="img")
    h = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(Conv2D(4, 3, padding="same", name="stem")(x)))
    h = L.MaxPooling2D(3, strides=2, name="stem_pool")(L.ZeroPadding2D(1, name="stem_pad")(h))
    a = Conv2D(3, 1, activation="relu", name="a")(h)
    b = L.SeparableConv2D(3, 3, padding="same", activation="relu", depthwise_initializer="zeros",
                          pointwise_initializer="zeros", name="sep")(h)
    h = L.MaxPooling2D(2, strides=1, name="cat_pool")(L.Concatenate(name="cat")([a, b]))
    s = L.Average(name="mean")([Conv2D(4, 1, activation="relu", name="c")(h), Conv2D(4, 1, activation="relu", name="d")(h)])
    h = L.MaxPooling2D(2, strides=1, padding="same", name="mean_pool")(s)
    h = L.ReLU(name="diff_relu")(L.Subtract(name="diff")([Conv2D(3, 1, name="e")(h), Conv2D(3, 3, padding="same", name="f")(h)]))
    h = L.BatchNormalization(name="bn")(h)
    h = L.MaxPooling2D(2, name="bn_pool")(h)
    return randomize(keras.Model(x, Dense(4, activation="softmax", name="out")(L.Flatten(name="flat")(h)),
                                 name="pooled_blocks"), 33)


def build_resnet_blocks() -> keras.Model:
    """validation/train.py's mnist_resnet in small, on 12x12x1: a stride-2 stem Conv-BN-ReLU, an identity
    block (Conv-BN-ReLU-Conv-BN + input, ReLU) and a downsampling block whose shortcut is a stride-2
    Conv1x1-BN, then GlobalAveragePooling2D and a softmax Dense."""
    def conv_bn(h, filters: int, kernel: int, strides: int, name: str):
        h = Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(h)
        return L.BatchNormalization(name=f"{name}_bn")(h)

    def block(h, filters: int, strides: int, name: str):
        r = L.ReLU(name=f"{name}_relu1")(conv_bn(h, filters, 3, strides, f"{name}_conv1"))
        r = conv_bn(r, filters, 3, 1, f"{name}_conv2")
        skip = h if strides == 1 else conv_bn(h, filters, 1, strides, f"{name}_skip")
        return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([r, skip]))

    x = keras.Input((12, 12, 1), name="image")
    h = L.ReLU(name="stem_relu")(conv_bn(x, 3, 3, 2, "stem"))
    h = block(block(h, 3, 1, "block1"), 4, 2, "block2")
    y = Dense(3, activation="softmax", name="out")(L.GlobalAveragePooling2D(name="gap")(h))
    return randomize(keras.Model(x, y, name="resnet_blocks"), 36)


def build_dense_blocks() -> keras.Model:
    """validation/train.py's mnist_densenet in small, on 12x12x1: dense blocks of BN-ReLU-Conv3x3 layers, each
    fed the Concatenate of every earlier (linear) convolution output, a BN-ReLU-Conv1x1-AveragePooling2D
    transition between them, then BN-ReLU-GlobalAveragePooling2D and a softmax Dense."""
    def bn_relu_conv(h, filters: int, kernel: int, name: str):
        h = L.ReLU(name=f"{name}_relu")(L.BatchNormalization(name=f"{name}_bn")(h))
        return Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(h)

    def dense_block(h, name: str):
        maps = [h]
        for i in (1, 2):
            joined = maps[0] if len(maps) == 1 else L.Concatenate(name=f"{name}_cat{i}")(maps)
            maps.append(bn_relu_conv(joined, 2, 3, f"{name}_l{i}"))
        return L.Concatenate(name=f"{name}_out")(maps)

    x = keras.Input((12, 12, 1), name="image")
    h = dense_block(Conv2D(3, 3, strides=2, padding="same", use_bias=False, name="stem")(x), "dense1")
    h = L.AveragePooling2D(2, name="trans_pool")(bn_relu_conv(h, 4, 1, "trans"))
    h = L.ReLU(name="final_relu")(L.BatchNormalization(name="final_bn")(dense_block(h, "dense2")))
    y = Dense(3, activation="softmax", name="out")(L.GlobalAveragePooling2D(name="gap")(h))
    return randomize(keras.Model(x, y, name="dense_blocks"), 37)


def build_resampling() -> keras.Model:
    """Conv2DTranspose ('same', stride 2, then BatchNormalization and ReLU; 'valid' with output_padding),
    Cropping2D, a MaxPool of the cropped ReLU, UpSampling2D (nearest, unequal factors), Permute (height and
    width swapped) and a bilinear UpSampling2D (factors 2 and 3 of the odd 11x9 map), on 6x6x2."""
    transpose = functools.partial(L.Conv2DTranspose, kernel_initializer="zeros")
    return randomize(keras.Sequential([
        keras.Input((6, 6, 2)),
        Conv2D(3, 3, padding="same", activation="relu", name="conv"),
        transpose(4, 3, strides=2, padding="same", name="up_same"),
        L.BatchNormalization(name="up_bn"),
        L.ReLU(name="up_relu"),
        L.Cropping2D(((1, 2), (0, 1)), name="crop"),
        L.MaxPooling2D(2, name="pool"),
        L.UpSampling2D((2, 1), name="nearest"),
        transpose(3, 2, strides=(1, 2), padding="valid", output_padding=(0, 1), activation="relu", name="up_valid"),
        L.Permute((2, 1, 3), name="swap"),
        L.UpSampling2D((2, 3), interpolation="bilinear", name="bilinear"),
        Conv2D(2, 3, strides=2, activation="relu", name="down"),
        L.Flatten(name="flat"),
        Dense(4, activation="softmax", name="out"),
    ], name="resampling"), 41)  # a seed whose output layer is live


def build_resampling_1d() -> keras.Model:
    """UpSampling1D, Cropping1D, Conv1DTranspose ('same', stride 2, dilation-free) and Permute of (L, C)."""
    return randomize(keras.Sequential([
        keras.Input((10, 3)),
        Conv1D(4, 3, padding="same", activation="relu", name="conv"),
        L.UpSampling1D(2, name="nearest"),
        L.Cropping1D((1, 3), name="crop"),
        L.Conv1DTranspose(3, 3, strides=2, padding="same", activation="relu", kernel_initializer="zeros",
                          name="up"),
        L.Permute((2, 1), name="swap"),
        Conv1D(2, 3, strides=2, activation="relu", name="down"),
        L.Flatten(name="flat"),
        Dense(3, activation="softmax", name="out"),
    ], name="resampling_1d"), 35)


# Models every simulator writer is tested on: each converts into a spiking network (the zoo's
# inception and conv1d max-pool a non-spiking tensor, which the converter refuses).
SPIKING = ("lenet", "branches", "residual", "sequence", "depthwise", "zero_padding", "maxpool_stride", "avgpool",
           "pooled_blocks", "resampling", "resampling_1d")

BUILDERS = {
    "lenet": build_lenet,
    "inception": build_inception,
    "residual": build_residual,
    "conv1d": build_conv1d,
    "depthwise": build_depthwise,
    "zero_padding": build_zero_padding,
    "maxpool_stride": build_maxpool_stride,
    "avgpool": build_avgpool,
    "batchnorm": build_batchnorm,
    "geometry": build_geometry,
    "dilation": build_dilation,
    "misc": build_misc,
    "nested": build_nested,
    "hostile_names": build_hostile_names,
    "branches": build_branches,
    "sequence": build_sequence,
    "pooled_blocks": build_pooled_blocks,
    "resampling": build_resampling,
    "resampling_1d": build_resampling_1d,
    "resnet_blocks": build_resnet_blocks,
    "dense_blocks": build_dense_blocks,
}


def edit_layers(path, class_name: str, out, edit):
    """A copy of the .keras file ``path`` at ``out`` in which ``edit(layer)`` changed the config entry of
    every layer of ``class_name`` (e.g. a look-alike class of another package, or out-of-range values)."""
    import json
    import zipfile
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(files["config.json"])
    for layer in cfg["config"]["layers"]:
        if layer["class_name"] == class_name:
            edit(layer)
    files["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out


def from_package(registered_name: str, module: str):
    """An ``edit_layers`` edit: the layer claims to be ``registered_name`` from ``module``."""
    return lambda layer: layer.update(registered_name=registered_name, module=module)
