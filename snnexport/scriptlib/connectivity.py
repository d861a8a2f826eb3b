"""Synapse lists (pre, post, weight) from the linear ops of a projection, vectorized with numpy.

Ops come as plain ``(kind, params)`` pairs and the module uses numpy only (see
:mod:`snnexport.scriptlib`): the writers embed it in every exported script, so the package and the
scripts expand kernels into synapses with the same code. Indices are flat C-order indices of
the channels-last tensors, so a Flatten or Reshape maps neuron i to neuron i and needs no synapses.
"""

import numpy as np

# A synapse list is a tuple (pre, post, weight) of int64, int64, float32 arrays of equal length.
# (No alias name for it: the scripts embed this module, and a Brian2 script needs the name Synapses.)


def _grid(*sizes):
    """Broadcastable index arrays, one per axis, for a grid of the given sizes."""
    return np.ix_(*[np.arange(n, dtype=np.int64) for n in sizes])


def _out_size(size, pad, k, stride, dilation=1):
    return (size + pad[0] + pad[1] - (k - 1) * dilation - 1) // stride + 1


def conv2d(in_shape, kernel, strides=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """Grouped strided dilated convolution; returns (synapses of given targets, output shape)."""
    h, w, c = in_shape
    kh, kw, cig, cout = kernel.shape
    ho = _out_size(h, padding[0], kh, strides[0], dilation[0])
    wo = _out_size(w, padding[1], kw, strides[1], dilation[1])
    cog = cout // groups

    def synapses(targets):
        oy, ox, ky, kx, ci, o = _grid(ho, wo, kh, kw, cig, cout)
        iy = oy * strides[0] - padding[0][0] + ky * dilation[0]
        ix = ox * strides[1] - padding[1][0] + kx * dilation[1]
        valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        if targets is not None:  # the outputs are the grid's axes oy, ox and o
            valid = valid & targets.reshape(ho, wo, 1, 1, 1, cout)
        return _kernel_synapses(kernel, (ho, wo, kh, kw, cig, cout), valid, (iy * w + ix) * c + (o // cog) * cig + ci,
                                (oy * wo + ox) * cout + o, ky, kx, ci, o)
    return synapses, (ho, wo, cout)


def _kernel_synapses(kernel, full, valid, pre, post, ky, kx, ci, o):
    """(pre, post, weight) of every tap of a (transposed) convolution's index grid ``full`` that lands
    inside the map (``valid``: also on a wanted target) and has a non-zero weight."""
    wgt = np.broadcast_to(kernel[ky, kx, ci, o], full)
    keep = np.broadcast_to(valid, full) & (wgt != 0)
    return (np.broadcast_to(pre, full)[keep], np.broadcast_to(post, full)[keep], wgt[keep].astype(np.float32))


def conv_transpose(in_shape, kernel, strides=(1, 1), crop=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """Grouped transposed convolution: input (iy, ix) reaches output (iy*s + ky*d - crop); see ops.ConvTranspose."""
    h, w, c = in_shape
    kh, kw, cig, cout = kernel.shape
    ho = (h - 1) * strides[0] + (kh - 1) * dilation[0] + 1 - crop[0][0] - crop[0][1]
    wo = (w - 1) * strides[1] + (kw - 1) * dilation[1] + 1 - crop[1][0] - crop[1][1]
    cog = cout // groups

    def synapses(targets):
        iy, ix, ky, kx, ci, o = _grid(h, w, kh, kw, cig, cout)
        oy = iy * strides[0] + ky * dilation[0] - crop[0][0]
        ox = ix * strides[1] + kx * dilation[1] - crop[1][0]
        valid = (oy >= 0) & (oy < ho) & (ox >= 0) & (ox < wo)
        post = (oy * wo + ox) * cout + o
        if targets is not None:  # (post lies outside the map where not valid)
            valid = valid & targets[np.where(valid, post, 0)]
        return _kernel_synapses(kernel, (h, w, kh, kw, cig, cout), valid, (iy * w + ix) * c + (o // cog) * cig + ci,
                                post, ky, kx, ci, o)
    return synapses, (ho, wo, cout)


def dense(in_shape, weight):
    """Dense layer over the last axis; every other axis is a position with its own copy. Only the nonzero
    weights are visited (a resize's interpolation matrix is mostly zeros: snnexport.resize)."""
    fin, fout = weight.shape
    positions = int(np.prod(in_shape[:-1], dtype=np.int64))
    rows, cols = np.nonzero(weight)  # C order: the (i, j) order of the full list
    values = weight[rows, cols].astype(np.float32)

    def synapses(targets):
        p = np.arange(positions, dtype=np.int64)[:, None]
        keep = np.ones((positions, len(rows)), bool)
        if targets is not None:
            keep = targets.reshape(positions, fout)[:, cols]
        full = keep.shape
        pre = np.broadcast_to(p * fin + rows, full)[keep]
        post = np.broadcast_to(p * fout + cols, full)[keep]
        return pre, post, np.broadcast_to(values, full)[keep]
    return synapses, tuple(in_shape[:-1]) + (fout,)


def avgpool(in_shape, pool, strides, padding=((0, 0), (0, 0))):
    """Average pooling as a depthwise convolution whose weight is 1 / (real cells under the window)."""
    c = in_shape[2]
    kernel = np.ones(tuple(pool) + (1, c), np.float32)
    window, out_shape = conv2d(in_shape, kernel, strides, padding, (1, 1), c)

    def synapses(targets):
        pre, post, wgt = window(targets)
        counts = np.bincount(post, minlength=int(np.prod(out_shape)))  # real cells feeding each (wanted) output
        return pre, post, (wgt / counts[post]).astype(np.float32)
    return synapses, out_shape


def _one_to_one(n, post, weight):
    """Synapses from input neuron i to post[i] with weight[i] (flat, C order)."""
    pre = np.arange(n, dtype=np.int64)
    post = np.asarray(post, np.int64).reshape(-1)
    weight = np.asarray(weight, np.float32).reshape(-1)

    def synapses(targets):
        if targets is None:
            return pre, post, weight
        keep = targets[post]
        return pre[keep], post[keep], weight[keep]
    return synapses


def pad(in_shape, padding):
    h, w, c = in_shape
    (t, b), (l, r) = padding
    y, x, ch = _grid(h, w, c)
    post = ((y + t) * (w + l + r) + (x + l)) * c + ch
    return _one_to_one(h * w * c, post, np.ones(h * w * c)), (h + t + b, w + l + r, c)


def embed(in_shape, axis, offset, total):
    out_shape = list(in_shape)
    out_shape[axis] = total
    idx = np.indices(in_shape).reshape(len(in_shape), -1)
    idx[axis] += offset
    post = np.ravel_multi_index(tuple(idx), tuple(out_shape))
    n = int(np.prod(in_shape))
    return _one_to_one(n, post, np.ones(n)), tuple(out_shape)


def affine(in_shape, scale, offset=None):
    n = int(np.prod(in_shape))
    wgt = np.broadcast_to(scale, tuple(in_shape))
    return _one_to_one(n, np.arange(n), wgt), tuple(in_shape)


def scale(in_shape, factor):
    n = int(np.prod(in_shape))
    return _one_to_one(n, np.arange(n), np.full(n, factor)), tuple(in_shape)


def transpose(in_shape, axes):
    n = int(np.prod(in_shape))
    post = np.arange(n, dtype=np.int64).reshape(tuple(in_shape[a] for a in axes))  # output index at each place
    return _one_to_one(n, np.transpose(post, np.argsort(axes)), np.ones(n)), tuple(in_shape[a] for a in axes)


def reshape(in_shape, shape):
    return None, tuple(shape)  # flat indices are unchanged: no synapses needed


# op kind → its expander (in_shape, **params) → (synapses or None, out_shape), where synapses(targets) gives the
# op's (pre, post, weight) onto the output neurons where the bool mask ``targets`` is set (None: onto all), in
# the order of the full list. Every linear op a projection may carry (tests/test_scriptlib.py checks this
# against snnexport.ops).
EXPANDERS = {"conv2d": conv2d, "dense": dense, "avgpool": avgpool, "pad": pad,
             "embed": embed, "affine": affine, "scale": scale, "reshape": reshape,
             "conv_transpose": conv_transpose, "transpose": transpose}
_IGNORED = ("bias",)  # constant terms live in the target population's bias, not in synapses


def compose(first, second, n_mid, n_out):
    """Synapses of ``second`` after ``first``: paths through the middle layer, summed per (pre, post)."""
    pa, qa, wa = first
    pb, qb, wb = second
    order = np.argsort(pb, kind="stable")
    pb, qb, wb = pb[order], qb[order], wb[order]
    counts = np.bincount(pb, minlength=n_mid)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    reps = counts[qa]
    total = int(reps.sum())
    src = np.repeat(np.arange(len(pa)), reps)
    within = np.arange(total) - np.repeat(np.cumsum(reps) - reps, reps)
    idx = np.repeat(starts[qa], reps) + within
    key = pa[src] * np.int64(n_out) + qb[idx]
    uniq, inv = np.unique(key, return_inverse=True)
    wgt = np.bincount(inv, weights=wa[src].astype(np.float64) * wb[idx], minlength=len(uniq))
    keep = wgt != 0
    return (uniq[keep] // n_out, uniq[keep] % n_out, wgt[keep].astype(np.float32))


def expand(ops, in_shape, targets=None):
    """Synapses from a chain of ``(kind, params)`` linear ops applied to a tensor of ``in_shape``.

    Returns ((pre, post, weight), out_shape); pre/post are flat channels-last indices. ``targets``, a bool
    mask over the flat output, keeps only the synapses onto those neurons: the full list filtered by
    targets[post], element for element, but without making the rest (an MPI process expands only the synapses
    onto its own neurons). Each op, from the last, makes only the synapses onto neurons that the ops after it
    still need, and composing those gives every path to a wanted target, summed in the same order.
    """
    shapes, steps = [tuple(in_shape)], []
    for kind, params in ops:
        args = {k: v for k, v in params.items() if k not in _IGNORED}
        step, out_shape = EXPANDERS[kind](shapes[-1], **args)
        steps.append(step)
        shapes.append(tuple(out_shape))
    made = [None] * len(steps)
    wanted = None if targets is None else np.asarray(targets, bool).reshape(-1)
    for k in reversed(range(len(steps))):
        if steps[k] is not None:  # (a reshape keeps the flat indices, and so the wanted neurons)
            made[k] = steps[k](wanted)
            if wanted is not None:
                wanted = np.zeros(int(np.prod(shapes[k])), bool)
                wanted[made[k][0]] = True
    syn = None
    for k, step in enumerate(made):
        if step is not None:
            n_mid, n_out = int(np.prod(shapes[k])), int(np.prod(shapes[k + 1]))
            syn = step if syn is None else compose(syn, step, n_mid, n_out)
    if syn is None:  # only reshapes: the identity
        syn = scale(shapes[-1], 1.0)[0](wanted)
    return syn, shapes[-1]
