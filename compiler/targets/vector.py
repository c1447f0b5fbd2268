"""Lowering of non-GEMM IR ops onto the vector unit: one instruction per op,
streaming its operands from DRAM and its result back (the unit's own buffers
are not modelled). Each emits a descriptor (layouts below), names the element
type of each DRAM operand in its *_dtype operands (inputs in order, then the
result), and records the DRAM bytes and element-ops the timing model charges.
Constant operands (an affine's scale and shift, a binary op's constant) are
placed in the weight type; results are stored in the activation type.

Descriptor int fields per opcode:
  vec_relu     src dst n
  vec_binary   a b dst op rank shape[6] a_strides[6] b_strides[6]   (elements; 0 = broadcast)
  vec_affine   src scale shift dst n c hw
  vec_*pool    src dst planes h w oh ow kh kw sh sw pt pl count_include_pad pb pr
  vec_lrn      src dst n c hw size            floats: alpha beta bias
  vec_softmax  src dst outer axis_len inner
  vec_copy     src dst shape[6] src_strides[6] dst_strides[6]
"""
from __future__ import annotations

import numpy as np

from compiler.errors import CompileError
from compiler.program import BINARY_OPS, DTYPE_CODE, ELEMENT_BYTES, MAX_RANK


def _strides(shape) -> list:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= int(d)
    return out[::-1]


def _pad6(shape, strides, where):
    if len(shape) > MAX_RANK:
        raise CompileError(f"{where}: rank {len(shape)} exceeds the vector unit's {MAX_RANK}")
    pad = MAX_RANK - len(shape)
    return [1] * pad + [int(d) for d in shape], [0] * pad + [int(s) for s in strides]


def _broadcast_strides(in_shape, out_shape) -> list:
    in_shape = [1] * (len(out_shape) - len(in_shape)) + list(in_shape)
    return [0 if d == 1 and o != 1 else s for d, o, s in zip(in_shape, out_shape, _strides(in_shape))]


def lower(graph, node, plan, builder, ready, layer: int) -> None:
    where = f"node '{node.name}' ({node.op})"
    shape = lambda name: graph.tensors[name].shape  # noqa: E731
    size = lambda name: graph.tensors[name].size    # noqa: E731
    deps = [ready.get(name, -1) for name in node.inputs]
    out = node.outputs[0]
    regions = [plan.region(name) for name in node.inputs]
    dst_region = plan.region(out)
    dst = dst_region.offset
    srcs = [r.offset for r in regions]
    codes = [DTYPE_CODE[r.dtype] for r in regions + [dst_region]]
    traffic = sum(r.nbytes for r in regions) + dst_region.nbytes

    def emit(opcode, ints, work, floats=(), dram=traffic):
        desc = builder.descriptor(ints, floats)
        ready[out] = builder.emit(opcode, layer, (desc, *codes), deps=deps, dram_bytes=dram, work=work,
                                  onchip_bytes=dram)

    op = node.op
    if op == "relu":
        emit("vec_relu", [srcs[0], dst, size(out)], size(out))
    elif op in BINARY_OPS:
        out_shape = shape(out)
        dims, a_str = _pad6(out_shape, _broadcast_strides(shape(node.inputs[0]), out_shape), where)
        _, b_str = _pad6(out_shape, _broadcast_strides(shape(node.inputs[1]), out_shape), where)
        emit("vec_binary", [srcs[0], srcs[1], dst, BINARY_OPS[op], len(out_shape)] + dims + a_str + b_str, size(out))
    elif op == "affine":
        n, c = shape(out)[0], shape(out)[1]
        emit("vec_affine", [srcs[0], srcs[1], srcs[2], dst, n, c, size(out) // (n * c)], 2 * size(out))
    elif op in ("maxpool", "avgpool"):
        n, c, h, w = shape(node.inputs[0])
        oh, ow = shape(out)[2:]
        kh, kw = node.attrs["kernel"]
        sh, sw = node.attrs["strides"]
        pt, pl, pb, pr = node.attrs["pads"]
        cip = int(node.attrs.get("count_include_pad", 0))
        emit("vec_" + op, [srcs[0], dst, n * c, h, w, oh, ow, kh, kw, sh, sw, pt, pl, cip, pb, pr],
             size(out) * kh * kw)
    elif op == "lrn":
        n, c = shape(out)[0], shape(out)[1]
        a = node.attrs
        emit("vec_lrn", [srcs[0], dst, n, c, size(out) // (n * c), a["size"]],
             size(out) * (a["size"] + 3), floats=(a["alpha"], a["beta"], a["bias"]))
    elif op == "softmax":
        s = shape(out)
        axis = node.attrs["axis"] % len(s)
        outer, inner = int(np.prod(s[:axis])), int(np.prod(s[axis + 1:]))
        emit("vec_softmax", [srcs[0], dst, outer, s[axis], inner], 4 * size(out))
    elif op == "transpose":
        in_str = _strides(shape(node.inputs[0]))
        perm = node.attrs["perm"]
        dims, s_str = _pad6(shape(out), [in_str[p] for p in perm], where)
        _, d_str = _pad6(shape(out), _strides(shape(out)), where)
        emit("vec_copy", [srcs[0], dst] + dims + s_str + d_str, size(out))
    elif op == "concat":
        _lower_concat(graph, node, regions, dst_region, builder, ready, layer, deps, where)
    else:
        raise CompileError(f"{where}: no vector-unit lowering for IR op '{op}'")


def _lower_concat(graph, node, regions, dst, builder, ready, layer, deps, where):
    """One vec_copy per input, into its slice of the output."""
    out_shape = graph.tensors[dst.name].shape
    axis = node.attrs["axis"] % len(out_shape)
    out_str = _strides(out_shape)
    dst_bytes = ELEMENT_BYTES[dst.dtype]
    offset = 0
    last = -1
    for name, src, dep in zip(node.inputs, regions, deps):
        in_shape = graph.tensors[name].shape
        dims, s_str = _pad6(in_shape, _strides(in_shape), where)
        _, d_str = _pad6(in_shape, out_str, where)
        desc = builder.descriptor([src.offset, dst.offset + offset * out_str[axis] * dst_bytes] + dims + s_str + d_str)
        n = graph.tensors[name].size
        moved = n * (ELEMENT_BYTES[src.dtype] + dst_bytes)
        last = builder.emit("vec_copy", layer, (desc, DTYPE_CODE[src.dtype], DTYPE_CODE[dst.dtype]), deps=[dep],
                            dram_bytes=moved, work=n, onchip_bytes=moved)
        offset += in_shape[axis]
    ready[dst.name] = last
