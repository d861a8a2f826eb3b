"""A small numpy interpreter of NIR graphs, independent of snnexport's own code, for the nir tests.

Time is stepped with dt = 1 and zero delay: in each step the nodes run in topological order and each
sees its predecessors' outputs of the same step, summed (NIRTorch's timing). Input: the sample (C, H, W)
in every step. IF: v ← v + r·I; a spike where v > v_threshold (NIR's rule; ``rule=">="`` for
snnexport's), then v ← v_reset there. At most one spike per neuron per step. Channels-first (N, C, H, W).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pair(v) -> tuple[int, int]:
    a = np.asarray(v).reshape(-1)
    return int(a[0]), int(a[-1])


def conv2d(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups: int) -> np.ndarray:
    """PyTorch's Conv2d (cross-correlation) on (N, C, H, W)."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cout, cig, kh, kw = w.shape
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    n, _, ho, wo = win.shape[:4]
    win = win.reshape(n, groups, cig, ho, wo, kh, kw)
    w = w.reshape(groups, cout // groups, cig, kh, kw)
    return np.einsum("ngchwkl,gockl->ngohw", win, w).reshape(n, cout, ho, wo).astype(np.float32)


def pool(x: np.ndarray, node, mean: bool) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    s = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw].sum(axis=(-1, -2), dtype=np.float32)
    return s / np.float32(kh * kw) if mean else s


def run(graph, x: np.ndarray, steps: int, rule: str = ">") -> dict[str, np.ndarray]:
    """Spike counts (N, *shape) of every IF node over ``steps`` steps of input x (N, *input shape)."""
    import nir
    order, edges = _topological(graph)
    n = len(x)
    v = {k: np.zeros((n,) + tuple(graph.nodes[k].v_threshold.shape), np.float32)
         for k in order if isinstance(graph.nodes[k], nir.IF)}
    counts = {k: np.zeros(a.shape, np.int32) for k, a in v.items()}
    for _ in range(steps):
        out: dict[str, np.ndarray] = {}
        for k in order:
            node = graph.nodes[k]
            ins = [out[a] for a, b in edges if b == k]
            i = x.astype(np.float32) if isinstance(node, nir.Input) else sum(ins[1:], ins[0])
            if isinstance(node, nir.IF):
                v[k] += node.r.astype(np.float32) * i
                s = v[k] > node.v_threshold if rule == ">" else v[k] >= node.v_threshold
                v[k] = np.where(s, node.v_reset.astype(np.float32), v[k])
                counts[k] += s
                out[k] = s.astype(np.float32)
            elif isinstance(node, nir.Conv2d):
                out[k] = conv2d(i, node.weight, node.stride, node.padding, node.dilation, int(node.groups)) \
                    + node.bias.astype(np.float32)[None, :, None, None]
            elif isinstance(node, (nir.Affine, nir.Linear)):
                out[k] = i @ node.weight.T.astype(np.float32) + (node.bias if isinstance(node, nir.Affine) else 0)
            elif isinstance(node, nir.Scale):
                out[k] = i * node.scale.astype(np.float32)
            elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
                out[k] = pool(i, node, isinstance(node, nir.AvgPool2d))
            elif isinstance(node, nir.Flatten):
                out[k] = i.reshape(n, -1)
            elif isinstance(node, (nir.Input, nir.Output)):
                out[k] = i
            else:
                raise TypeError(f"node {k}: {type(node).__name__} is not interpreted here")
    return counts


def _topological(graph) -> tuple[list[str], list[tuple[str, str]]]:
    edges = [tuple(e) for e in graph.edges]
    done: list[str] = []
    while len(done) < len(graph.nodes):
        for k in graph.nodes:
            if k not in done and all(a in done for a, b in edges if b == k):
                done.append(k)
                break
        else:
            raise ValueError("cycle")
    return done, edges
