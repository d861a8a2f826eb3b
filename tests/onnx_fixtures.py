"""ONNX test models written with ``onnx.helper`` (no PyTorch needed), as PyTorch's exporter would write them.

``FIXTURES`` maps a name to a function that builds one model; each holds the operators and
geometry of one case, with seeded random weights. ``lenet_onnx`` rewrites a Keras-read LeNet graph
as the NCHW ONNX graph ``torch.onnx.export`` would make of the same network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from snnexport import ops
from snnexport.graph import Graph

NEWEST_OPSET = onnx.defs.onnx_opset_version()
DEFAULT_OPSET = 17  # what torch.onnx.export writes by default


class Builder:
    """A graph under construction: ``x`` is the input (N, *shape); methods return output names."""

    def __init__(self, shape: tuple[int, ...], opset: int = DEFAULT_OPSET, seed: int = 0,
                 batch: str | int = "N") -> None:
        self.shape = tuple(shape)
        self.opset = opset
        self.batch = batch
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0
        self.x = "x"

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, value: Any, dtype: Any = np.float32, base: str = "c") -> str:
        arr = np.asarray(value, dtype)
        name = self.name(base)
        self.inits.append(onnx.numpy_helper.from_array(arr, name))
        return name

    def rand(self, *shape: int, scale: float = 1.0, positive: bool = False) -> str:
        v = self.rng.uniform(0.5, 1.5, shape) if positive else self.rng.normal(0, scale, shape)
        return self.const(v, base="w")

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> Any:
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"/{op_type}_{self.count}", **attrs))
        return outs[0] if n_out == 1 else outs

    # layers, as PyTorch exports them --------------------------------------------------------
    def conv(self, x: str, cin: int, cout: int, k: int | tuple[int, ...], group: int = 1, bias: bool = True,
             **attrs: Any) -> str:
        ks = (k, k) if isinstance(k, int) else tuple(k)
        fan = cin // group * math.prod(ks)
        ins = [x, self.rand(cout, cin // group, *ks, scale=1 / math.sqrt(fan))]
        if bias:
            ins.append(self.rand(cout, scale=0.1))
        if group != 1:
            attrs["group"] = group
        return self.op("Conv", ins, **attrs)

    def bn(self, x: str, c: int, eps: float = 1e-5) -> str:
        return self.op("BatchNormalization", [x, self.rand(c, positive=True), self.rand(c, scale=0.2),
                                              self.rand(c, scale=0.2), self.rand(c, positive=True)], epsilon=eps)

    def gemm(self, x: str, fin: int, fout: int, trans_b: bool = True, **attrs: Any) -> str:
        w = self.rand(*((fout, fin) if trans_b else (fin, fout)), scale=1 / math.sqrt(fin))
        return self.op("Gemm", [x, w, self.rand(fout, scale=0.1)], transB=int(trans_b), **attrs)

    def readout(self, x: str) -> str:
        """Flatten and multiply by the identity: every element of a spatial tensor, in NCHW order.

        (A spatial model output is refused: its element order would not be PyTorch's.)
        """
        dims = self.model(x).graph.output[0].type.tensor_type.shape.dim[1:]
        return self.op("MatMul", [self.flatten(x), self.const(np.eye(math.prod(d.dim_value for d in dims)))])

    def relu(self, x: str) -> str:
        return self.op("Relu", [x])

    def flatten(self, x: str) -> str:
        return self.op("Flatten", [x], axis=1)

    def model(self, out: str) -> onnx.ModelProto:
        """The model, its output typed by ONNX's own shape inference (as exporters write it)."""
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [self.batch, *self.shape])
        graph = helper.make_graph(self.nodes, "fixture", [x], [], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="snnexport-tests")
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        except onnx.shape_inference.InferenceError:  # the models the reader must refuse
            inferred = []
        info = next((v for v in inferred if v.name == out), None)
        model.graph.output.append(info or helper.make_tensor_value_info(out, TensorProto.FLOAT, []))
        return model


# ---------------------------------------------------------------------------------------------
# fixtures: every supported operator and geometry case


def conv_case(k: int | tuple[int, int], size: int = 9, cin: int = 3, cout: int = 4, **attrs: Any) -> Callable[[], onnx.ModelProto]:
    def build() -> onnx.ModelProto:
        b = Builder((cin, size, size + 1))
        return b.model(b.readout(b.relu(b.conv(b.x, cin, cout, k, **attrs))))
    return build


def conv_transpose_case(k: int, cin: int = 4, cout: int = 6, group: int = 1, **attrs: Any
                        ) -> Callable[[], onnx.ModelProto]:
    """ConvTranspose (weight (I, O/group, k, k)); grouped ones are tested against their
    block-diagonal equivalent (onnx 1.23's ReferenceEvaluator gets groups wrong)."""
    def build() -> onnx.ModelProto:
        b = Builder((cin, 7, 6))
        ins = [b.x, b.rand(cin, cout // group, k, k, scale=1 / k), b.rand(cout, scale=0.1)]
        return b.model(b.readout(b.relu(b.op("ConvTranspose", ins, group=group, **attrs))))
    return build


def pool_case(op: str, size: int = 9, c: int = 3, **attrs: Any) -> Callable[[], onnx.ModelProto]:
    def build() -> onnx.ModelProto:
        b = Builder((c, size, size - 1))
        return b.model(b.readout(b.op(op, [b.relu(b.x)], **attrs)))
    return build


def resize_case(mode: str, coords: str, scales: list[float] | None = None, sizes: list[int] | None = None,
                shape: tuple[int, ...] = (2, 5, 4), opset: int = DEFAULT_OPSET, **attrs: Any
                ) -> Callable[[], onnx.ModelProto]:
    """Resize of a ReLU (nn.Upsample exports scales; a size= export gives sizes), then a readout. Before
    opset 13 roi and scales must be present (empty when unused)."""
    def build() -> onnx.ModelProto:
        b = Builder(shape, opset=opset)
        empty = b.const(np.zeros(0, np.float32)) if opset < 13 else ""
        ins = [b.relu(b.x), empty, b.const(scales) if scales else empty]
        if sizes:
            ins.append(b.const(sizes, np.int64))
        r = b.op("Resize", ins, mode=mode, coordinate_transformation_mode=coords, **attrs)
        return b.model(b.readout(r))
    return build


def residual_block() -> onnx.ModelProto:
    """Conv-BN-Relu-Conv-BN + skip Add, Relu, then global pooling and a classifier."""
    b = Builder((4, 8, 8))
    stem = b.relu(b.bn(b.conv(b.x, 4, 8, 3, pads=[1, 1, 1, 1], bias=False), 8))
    h = b.relu(b.bn(b.conv(stem, 8, 8, 3, pads=[1, 1, 1, 1], bias=False), 8))
    h = b.bn(b.conv(h, 8, 8, 3, pads=[1, 1, 1, 1], bias=False), 8)
    h = b.relu(b.op("Add", [h, stem]))
    # a downsampling block: strided conv + a 1x1 strided projection on the skip path
    d = b.relu(b.bn(b.conv(h, 8, 12, 3, strides=[2, 2], pads=[1, 1, 1, 1], bias=False), 12))
    d = b.bn(b.conv(d, 12, 12, 3, pads=[1, 1, 1, 1], bias=False), 12)
    skip = b.bn(b.conv(h, 8, 12, 1, strides=[2, 2], bias=False), 12)
    h = b.relu(b.op("Add", [d, skip]))
    g = b.flatten(b.op("GlobalAveragePool", [h]))
    return b.model(b.gemm(g, 12, 5))


def inception() -> onnx.ModelProto:
    b = Builder((4, 10, 10))
    h = b.relu(b.conv(b.x, 4, 6, 3, pads=[1, 1, 1, 1]))
    p1 = b.relu(b.conv(h, 6, 3, 1))
    p2 = b.relu(b.conv(b.relu(b.conv(h, 6, 4, 1)), 4, 5, 3, pads=[1, 1, 1, 1]))
    p3 = b.relu(b.conv(b.relu(b.conv(h, 6, 2, 1)), 2, 3, 5, pads=[2, 2, 2, 2]))
    p4 = b.relu(b.conv(b.op("MaxPool", [h], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]), 6, 2, 1))
    cat = b.op("Concat", [p1, p2, p3, p4], axis=1)
    pooled = b.op("MaxPool", [cat], kernel_shape=[2, 2], strides=[2, 2])
    return b.model(b.gemm(b.flatten(pooled), 13 * 5 * 5, 6))


def legacy_flatten() -> onnx.ModelProto:
    """x.view(x.size(0), -1) as the TorchScript exporter writes it: Shape → Gather → Unsqueeze → Concat → Reshape."""
    b = Builder((2, 7, 6))
    h = b.relu(b.conv(b.x, 2, 3, 3))
    pooled = b.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])  # (3, 2, 2)
    shape = b.op("Shape", [pooled])
    n = b.op("Gather", [shape, b.const(0, np.int64)], axis=0)
    n1 = b.op("Unsqueeze", [n, b.const([0], np.int64)])
    target = b.op("Concat", [n1, b.const([-1], np.int64)], axis=0)
    flat = b.op("Reshape", [pooled, target])
    return b.model(b.gemm(flat, 12, 4))


def shape_arithmetic() -> onnx.ModelProto:
    """A flatten target from Shape → Slice → Cast → Concat (the batch size kept symbolic); ReduceMax pooling."""
    b = Builder((2, 6, 6), opset=13)
    h = b.relu(b.conv(b.x, 2, 4, 3))
    pooled = b.op("ReduceMax", [h], axes=[2, 3], keepdims=1)  # (4, 1, 1): x.amax((2, 3), keepdim=True)
    n = b.op("Slice", [b.op("Shape", [pooled]), b.const([0], np.int64), b.const([1], np.int64)])
    n = b.op("Cast", [n], to=TensorProto.INT32)
    target = b.op("Cast", [b.op("Concat", [n, b.const([-1], np.int32)], axis=0)], to=TensorProto.INT64)
    return b.model(b.gemm(b.op("Reshape", [pooled, target]), 4, 3))


def flatten_elementwise() -> onnx.ModelProto:
    """NCHW flatten, then element-wise ops that commute with the permutation, then a MatMul + Add."""
    b = Builder((3, 5, 4))
    h = b.conv(b.x, 3, 4, 3, pads=[1, 1, 1, 1])
    flat = b.flatten(h)  # 80 features in NCHW order
    flat = b.op("Add", [flat, b.rand(80, scale=0.3)])
    flat = b.op("Mul", [flat, b.rand(1, 80, positive=True)])
    flat = b.op("Identity", [b.op("Dropout", [b.relu(flat)])])
    other = b.relu(b.flatten(b.conv(b.x, 3, 4, 3, pads=[1, 1, 1, 1])))
    flat = b.op("Add", [flat, other])
    flat = b.op("Clip", [flat, b.const(0.0), b.const(2.0)])
    y = b.op("MatMul", [flat, b.rand(80, 7, scale=0.2)])
    return b.model(b.op("Add", [y, b.rand(7, scale=0.1)]))


def gemm_variants() -> onnx.ModelProto:
    b = Builder((10,))
    x = b.op("Cast", [b.x], to=TensorProto.FLOAT)  # x.float(): nothing to do
    h = b.relu(b.gemm(x, 10, 8, trans_b=True, alpha=0.5, beta=2.0))
    h = b.relu(b.gemm(h, 8, 6, trans_b=False, alpha=1.5, beta=0.25))
    h = b.op("BatchNormalization", [h, b.rand(6, positive=True), b.rand(6), b.rand(6), b.rand(6, positive=True)])
    h = b.op("Gemm", [h, b.rand(6, 4)])  # no bias
    return b.model(b.op("Softmax", [h], axis=1))


def matmul_transposed_weight() -> onnx.ModelProto:
    """A weight given as Transpose(initializer) and a Reshape target from a Constant node: folded."""
    b = Builder((2, 3, 3))
    w = b.op("Transpose", [b.rand(5, 18)], perm=[1, 0])
    target = b.name("target")
    b.nodes.append(helper.make_node("Constant", [], [target],
                                    value=helper.make_tensor("t", TensorProto.INT64, [2], [0, -1])))
    flat = b.op("Reshape", [b.relu(b.x), target])
    return b.model(b.op("MatMul", [flat, w]))


def relu6() -> onnx.ModelProto:
    b = Builder((3, 6, 6))
    h = b.op("Clip", [b.conv(b.x, 3, 4, 3), b.const(0.0), b.const(6.0)])  # ReLU6
    h = b.op("Clip", [b.conv(h, 4, 4, 1), b.const(0.0), b.const(np.inf)])  # Clip(0, inf) is relu
    h = b.op("Clip", [b.conv(h, 4, 4, 1), b.const(0.0)])  # no max: relu
    return b.model(b.flatten(b.op("GlobalMaxPool", [h])))


def arith_constants() -> onnx.ModelProto:
    """Add/Sub/Mul/Div of a tensor and constants: per channel, scalar, with a batch axis, const first."""
    b = Builder((3, 5, 5), opset=13)
    h = b.op("Sub", [b.x, b.const(np.array([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1))])  # input normalization
    h = b.op("Div", [h, b.const(np.array([0.2, 0.25, 0.3]).reshape(3, 1, 1))])
    h = b.conv(h, 3, 4, 3, pads=[1, 1, 1, 1])
    h = b.op("Mul", [h, b.const(0.5)])
    h = b.op("Add", [b.const(np.arange(4).reshape(4, 1, 1) * 0.1), h])
    h = b.op("Sub", [b.const(1.0), h])  # 1 - h
    h = b.op("Div", [b.relu(h), b.const(2.0)])
    h2 = b.relu(b.conv(b.x, 3, 4, 3, pads=[1, 1, 1, 1]))
    h = b.relu(b.op("Sub", [h, h2]))  # Sub of two tensors
    return b.model(b.op("ReduceMean", [h], axes=[2, 3], keepdims=0))


def depthwise_separable() -> onnx.ModelProto:
    b = Builder((4, 9, 9))
    h = b.relu(b.bn(b.conv(b.x, 4, 8, 3, group=4, pads=[1, 1, 1, 1], bias=False), 8))  # depthwise, multiplier 2
    h = b.relu(b.conv(h, 8, 6, 1))  # pointwise
    h = b.relu(b.conv(h, 6, 6, 3, group=2, strides=[2, 2], dilations=[1, 1]))  # grouped
    return b.model(b.flatten(b.op("GlobalAveragePool", [h])))


def squeeze_unsqueeze(opset: int) -> Callable[[], onnx.ModelProto]:
    """GAP → Squeeze (axes an attribute before opset 13, an input from 13) → Gemm; a flat → (C,1,1) Unsqueeze."""
    def build() -> onnx.ModelProto:
        b = Builder((3, 6, 6), opset=opset)
        h = b.op("GlobalAveragePool", [b.relu(b.conv(b.x, 3, 5, 3))])
        axes = {"axes": [2, 3]} if opset < 13 else {}
        ins = [h] if opset < 13 else [h, b.const([2, 3], np.int64)]
        s = b.op("Squeeze", ins, **axes)
        g = b.relu(b.gemm(s, 5, 4))
        u = b.op("Unsqueeze", [g] if opset < 13 else [g, b.const([2, 3], np.int64)], **axes)
        return b.model(b.flatten(b.conv(u, 4, 3, 1)))
    return build


def reshape_to_image() -> onnx.ModelProto:
    """(N, 64) reshaped to (N, 1, 8, 8) and convolved: one channel, so the orders agree."""
    b = Builder((64,))
    img = b.op("Reshape", [b.x, b.const([-1, 1, 8, 8], np.int64)])
    h = b.relu(b.conv(img, 1, 3, 3, strides=[2, 2]))
    return b.model(b.gemm(b.flatten(h), 27, 4))


def unflatten_reflatten() -> onnx.ModelProto:
    """Flatten a conv output, reshape it back to (C, H, W) and convolve again: the order round-trips."""
    b = Builder((2, 5, 5))
    h = b.relu(b.conv(b.x, 2, 3, 3))
    flat = b.relu(b.flatten(h))
    back = b.op("Reshape", [flat, b.const([0, 3, 3, 3], np.int64)])
    return b.model(b.flatten(b.op("GlobalAveragePool", [b.conv(back, 3, 2, 2)])))


def pad_op(opset: int) -> Callable[[], onnx.ModelProto]:
    def build() -> onnx.ModelProto:
        b = Builder((2, 5, 6), opset=opset)
        h = b.relu(b.x)
        if opset >= 18:  # pads for the listed axes only
            p = b.op("Pad", [h, b.const([1, 0, 2, 3], np.int64), b.const(0.0), b.const([2, 3], np.int64)])
        else:
            p = b.op("Pad", [h, b.const([0, 0, 1, 0, 0, 0, 2, 3], np.int64)], mode="constant")
        return b.model(b.readout(b.op("AveragePool", [p], kernel_shape=[3, 3], strides=[2, 2])))
    return build


def one_d() -> onnx.ModelProto:
    """Conv1d / MaxPool1d / AvgPool1d on (N, C, L), as PyTorch exports them."""
    b = Builder((3, 20))
    h = b.relu(b.conv(b.x, 3, 4, (5,), pads=[2, 1], strides=[2]))
    h = b.op("MaxPool", [h], kernel_shape=[3], strides=[2], pads=[1, 1], ceil_mode=1)
    h = b.op("AveragePool", [h], kernel_shape=[2], strides=[1], pads=[1, 0], count_include_pad=1)
    h = b.relu(b.conv(h, 4, 6, (3,), dilations=[2], group=2))
    return b.model(b.gemm(b.flatten(h), 12, 3))


def mini_cnn(opset: int) -> Callable[[], onnx.ModelProto]:
    """A small PyTorch-style CNN at a given opset (Clip as relu6 in the opset's own form)."""
    def build() -> onnx.ModelProto:
        b = Builder((1, 12, 12), opset=opset)
        h = b.relu(b.bn(b.conv(b.x, 1, 4, 3, pads=[1, 1, 1, 1]), 4))
        h = b.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
        if opset < 11:
            h = b.op("Clip", [b.conv(h, 4, 6, 3)], min=0.0, max=6.0)
            h = b.op("Pad", [h], pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="constant")
        else:
            h = b.op("Clip", [b.conv(h, 4, 6, 3), b.const(0.0), b.const(6.0)])
            h = b.op("Pad", [h, b.const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)], mode="constant")
        ceil = {"ceil_mode": 1} if opset >= 10 else {}
        h = b.op("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2], **ceil)
        h = b.op("Dropout", [b.flatten(h)])
        return b.model(b.op("Softmax", [b.gemm(h, 6 * 3 * 3, 10)], axis=1))
    return build


FIXTURES: dict[str, Callable[[], onnx.ModelProto]] = {
    # Conv geometry
    "conv_k3": conv_case(3),
    "conv_k2_even": conv_case(2),
    "conv_k4_stride2": conv_case(4, strides=[2, 2]),
    "conv_rect_kernel": conv_case((3, 2), strides=[1, 2]),
    "conv_asym_pads": conv_case(3, pads=[0, 1, 2, 0]),
    "conv_dilation": conv_case(3, dilations=[2, 2], pads=[2, 1, 2, 1]),
    "conv_stride_dilation": conv_case(3, strides=[2, 1], dilations=[1, 2]),
    "conv_groups": conv_case(3, cin=4, cout=6, group=2),
    "conv_depthwise": conv_case(3, cin=4, cout=4, group=4, pads=[1, 1, 1, 1]),
    "conv_same_upper": conv_case(4, auto_pad="SAME_UPPER", strides=[2, 2]),
    "conv_same_lower": conv_case(4, auto_pad="SAME_LOWER", strides=[2, 2]),
    "conv_valid": conv_case(3, auto_pad="VALID"),
    "conv_no_bias": conv_case(3, bias=False),
    "conv_transpose": conv_transpose_case(3),
    "conv_transpose_pads_dilation": conv_transpose_case(3, pads=[1, 0, 2, 1], dilations=[2, 1]),
    "conv_transpose_k2_valid": conv_transpose_case(2, auto_pad="VALID"),
    "conv_transpose_stride2": conv_transpose_case(3, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 0]),
    "conv_transpose_stride_dilation": conv_transpose_case(2, strides=[3, 2], dilations=[1, 2], pads=[0, 2, 1, 0]),
    # pooling geometry
    "maxpool_k2": pool_case("MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
    "maxpool_k3_pad": pool_case("MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "maxpool_ceil": pool_case("MaxPool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    "maxpool_ceil_pad": pool_case("MaxPool", size=10, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    "maxpool_asym": pool_case("MaxPool", kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 2, 0]),
    "maxpool_same": pool_case("MaxPool", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "maxpool_default_stride": pool_case("MaxPool", kernel_shape=[2, 2], storage_order=1),
    "avgpool_k2": pool_case("AveragePool", kernel_shape=[2, 2], strides=[2, 2]),
    "avgpool_exclude_pad": pool_case("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "avgpool_include_pad": pool_case("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                     count_include_pad=1),
    "avgpool_include_pad_asym": pool_case("AveragePool", kernel_shape=[3, 2], strides=[2, 1], pads=[2, 0, 0, 1],
                                          count_include_pad=1),
    "avgpool_ceil": pool_case("AveragePool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    "avgpool_ceil_include_pad": pool_case("AveragePool", size=10, kernel_shape=[3, 3], strides=[2, 2],
                                          pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
    "avgpool_ceil_exclude_pad": pool_case("AveragePool", size=10, kernel_shape=[3, 3], strides=[2, 2],
                                          pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=0),
    "avgpool_same_upper": pool_case("AveragePool", kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"),
    "avgpool_same_lower_include": pool_case("AveragePool", kernel_shape=[2, 2], strides=[2, 2],
                                            auto_pad="SAME_LOWER", count_include_pad=1),
    "global_avg": pool_case("GlobalAveragePool"),
    "global_max": pool_case("GlobalMaxPool"),
    # blocks and patterns
    "residual_block": residual_block,
    "inception": inception,
    "legacy_flatten": legacy_flatten,
    "shape_arithmetic": shape_arithmetic,
    "flatten_elementwise": flatten_elementwise,
    "gemm_variants": gemm_variants,
    "matmul_transposed_weight": matmul_transposed_weight,
    "relu6": relu6,
    "arith_constants": arith_constants,
    "depthwise_separable": depthwise_separable,
    "squeeze_unsqueeze_11": squeeze_unsqueeze(11),
    "squeeze_unsqueeze_13": squeeze_unsqueeze(13),
    "reshape_to_image": reshape_to_image,
    "unflatten_reflatten": unflatten_reflatten,
    "pad_11": pad_op(11),
    "pad_18_axes": pad_op(18),
    "one_d": one_d,
    # Resize: modes linear and nearest, every coordinate transformation, up and down, sizes or scales
    "resize_linear_half_pixel": resize_case("linear", "half_pixel", [1, 1, 2, 2]),
    "resize_linear_pytorch_half_pixel": resize_case("linear", "pytorch_half_pixel", [1, 1, 3, 1.5]),
    "resize_linear_align_corners_sizes": resize_case("linear", "align_corners", sizes=[3, 2, 9, 7]),
    "resize_linear_asymmetric_down": resize_case("linear", "asymmetric", [1, 1, 0.6, 0.75]),
    "resize_linear_half_pixel_down": resize_case("linear", "half_pixel", [1, 1, 0.5, 1.25]),
    "resize_linear_1d": resize_case("linear", "half_pixel", [1, 1, 2.5], shape=(3, 7)),
    "resize_linear_opset_11": resize_case("linear", "align_corners", [1, 1, 2, 3], opset=11),
    "resize_linear_antialias_up": resize_case("linear", "half_pixel", [1, 1, 2, 3], opset=18, antialias=1),
    "resize_nearest_asymmetric_floor": resize_case("nearest", "asymmetric", [1, 1, 2, 3], nearest_mode="floor"),
    "resize_nearest_half_pixel": resize_case("nearest", "half_pixel", [1, 1, 1.5, 2]),
    "resize_nearest_ceil_down": resize_case("nearest", "align_corners", sizes=[3, 2, 3, 3], nearest_mode="ceil"),
    "resize_nearest_prefer_ceil": resize_case("nearest", "pytorch_half_pixel", [1, 1, 3, 2],
                                              nearest_mode="round_prefer_ceil"),
    "cnn_opset_9": mini_cnn(9),
    "cnn_opset_11": mini_cnn(11),
    "cnn_opset_13": mini_cnn(13),
    f"cnn_opset_{NEWEST_OPSET}": mini_cnn(NEWEST_OPSET),
}


def sample(model: onnx.ModelProto, n: int = 3, seed: int = 1) -> np.ndarray:
    """Random inputs of the model's input shape (batch n), NCHW as ONNX wants them."""
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    return np.random.default_rng(seed).normal(0, 1, (n, *dims)).astype(np.float32)


def to_ours(x: np.ndarray) -> np.ndarray:
    """NCHW / NCL samples in the graph's channels-last layout: (N, H, W, C) / (N, 1, L, C)."""
    if x.ndim == 2:
        return x
    y = np.moveaxis(x, 1, -1)
    return y[:, None] if x.ndim == 3 else y


# ---------------------------------------------------------------------------------------------
# the bundled LeNet as the ONNX graph torch.onnx.export makes of it


def lenet_onnx(graph: Graph, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """An NCHW ONNX graph computing what the (Keras-read) LeNet ``graph`` computes.

    Kernels go to (O, I, kh, kw); the first dense layer's rows go from our channels-last flatten
    order to NCHW order, as a PyTorch model's ``Linear`` after ``torch.flatten`` would hold them.
    """
    h, w, c = graph.input_shape
    b = Builder((c, h, w), opset=opset)
    cur = b.x
    names = {graph.input_name: b.x}
    for n in graph.nodes:
        src = names[n.inputs[0]]
        op = n.op
        if isinstance(op, ops.Conv2D):
            assert op.groups == 1 and op.dilation == (1, 1)
            (t, bt), (l, r) = op.padding
            ins = [src, b.const(op.kernel.transpose(3, 2, 0, 1)), b.const(op.bias)]
            cur = b.op("Conv", ins, strides=list(op.strides), pads=[t, l, bt, r])
        elif isinstance(op, ops.Activation):
            cur = b.op({"relu": "Relu", "softmax": "Softmax"}[op.function], [src])
        elif isinstance(op, ops.MaxPool):
            (t, bt), (l, r) = op.padding
            cur = b.op("MaxPool", [src], kernel_shape=list(op.pool), strides=list(op.strides), pads=[t, l, bt, r])
        elif isinstance(op, ops.Reshape):
            cur = b.flatten(src)
        elif isinstance(op, ops.Dense):
            weight = op.weight
            prev = graph.shapes[n.inputs[0]]
            if len(graph.shapes[graph.node(n.inputs[0]).inputs[0]]) == 3:  # right after the flatten
                hh, ww, cc = graph.shapes[graph.node(n.inputs[0]).inputs[0]]
                order = np.arange(hh * ww * cc).reshape(cc, hh, ww).transpose(1, 2, 0).ravel()
                nchw = np.empty_like(weight)
                nchw[order] = weight  # NCHW row order[j] holds our row j
                weight = nchw
            assert weight.shape[0] == prev[0]
            cur = b.op("Gemm", [src, b.const(weight.T), b.const(op.bias)], transB=1)
        else:
            raise AssertionError(f"unexpected op {op}")
        names[n.name] = cur
    return b.model(cur)
