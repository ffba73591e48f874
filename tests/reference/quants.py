"""Dequantizers for ggml tensor types, vectorised over blocks with numpy.

Written from the block layouts and the dequantize_row_* definitions of ggml
(ggml-common.h, ggml-quants.c), without looking at Gantry's C codecs, so
that the reference and the engine can only agree by both being right. Each
function takes the raw bytes of whole blocks and returns float32 values
(exactly representable: every scale is an f16, every product of an f16 scale
and a small integer fits float32's significand, except the K-quants' second
level product which is done in float32 as ggml does).

dequantize(type_name, raw_uint8, n) -> np.float32[n]
"""
import numpy as np


def _f16(b):
    """uint8[..., 2] -> float32 (little-endian IEEE half)."""
    return np.ascontiguousarray(b).view("<f2").astype(np.float32)[..., 0]


def _blocks(raw, block_bytes):
    raw = np.asarray(raw, dtype=np.uint8)
    if raw.size % block_bytes:
        raise ValueError(f"{raw.size} bytes is not a whole number of {block_bytes}-byte blocks")
    return raw.reshape(-1, block_bytes)


def deq_f32(raw):
    return np.frombuffer(np.ascontiguousarray(raw).tobytes(), dtype="<f4").astype(np.float32)


def deq_f16(raw):
    return np.frombuffer(np.ascontiguousarray(raw).tobytes(), dtype="<f2").astype(np.float32)


def deq_bf16(raw):
    u = np.frombuffer(np.ascontiguousarray(raw).tobytes(), dtype="<u2").astype(np.uint32)
    return (u << 16).view(np.float32)


def deq_q4_0(raw):
    b = _blocks(raw, 18)
    d = _f16(b[:, 0:2])[:, None]
    qs = b[:, 2:18]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.int32) - 8  # [nb, 32]
    return (q * d).astype(np.float32).ravel()


def deq_q4_1(raw):
    b = _blocks(raw, 20)
    d = _f16(b[:, 0:2])[:, None]
    m = _f16(b[:, 2:4])[:, None]
    qs = b[:, 4:20]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.float32)
    return (q * d + m).astype(np.float32).ravel()


def _q5_high(qh_bytes):
    """uint8[nb, 4] -> high bits [nb, 32]: bit j of the little-endian u32 is element j's."""
    qh = np.ascontiguousarray(qh_bytes).view("<u4")[:, 0].astype(np.uint32)
    bits = (qh[:, None] >> np.arange(32, dtype=np.uint32)[None, :]) & 1
    return bits.astype(np.int32) << 4


def deq_q5_0(raw):
    b = _blocks(raw, 22)
    d = _f16(b[:, 0:2])[:, None]
    hi = _q5_high(b[:, 2:6])
    qs = b[:, 6:22]
    q = (np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.int32) | hi) - 16
    return (q * d).astype(np.float32).ravel()


def deq_q5_1(raw):
    b = _blocks(raw, 24)
    d = _f16(b[:, 0:2])[:, None]
    m = _f16(b[:, 2:4])[:, None]
    hi = _q5_high(b[:, 4:8])
    qs = b[:, 8:24]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.int32) | hi
    return (q * d + m).astype(np.float32).ravel()


def deq_q8_0(raw):
    b = _blocks(raw, 34)
    d = _f16(b[:, 0:2])[:, None]
    q = b[:, 2:34].view(np.int8).astype(np.float32)
    return (q * d).astype(np.float32).ravel()


def deq_q2_k(raw):
    # block: scales[16], qs[64], d (f16), dmin (f16)
    b = _blocks(raw, 84)
    nb = b.shape[0]
    sc = b[:, 0:16]
    qs = b[:, 16:80]
    d = _f16(b[:, 80:82])[:, None]
    dmin = _f16(b[:, 82:84])[:, None]
    # Element index = h*128 + j*32 + s*16 + l uses qs[h*32 + s*16 + l] >> (2j)
    # and scale byte h*8 + j*2 + s.
    q = qs.reshape(nb, 2, 1, 2, 16)  # [nb, h, (j), s, l]
    shifts = (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1, 1)
    v = ((q >> shifts) & 3).astype(np.float32)  # [nb, 2, 4, 2, 16]
    s = sc.reshape(nb, 2, 4, 2, 1)
    dl = d[:, :, None, None, None] * (s & 0xF).astype(np.float32)
    ml = dmin[:, :, None, None, None] * (s >> 4).astype(np.float32)
    return (dl * v - ml).astype(np.float32).reshape(-1)


def _q3_k_scales(s12):
    """uint8[nb, 12] -> int32[nb, 16] six-bit scales minus 32."""
    i = np.arange(16)
    low = np.where(i < 8, s12[:, i % 8] & 0xF, s12[:, i % 8] >> 4).astype(np.int32)
    high = ((s12[:, 8 + (i % 4)] >> (2 * (i // 4)).astype(np.uint8)) & 3).astype(np.int32)
    return (low | (high << 4)) - 32


def deq_q3_k(raw):
    # block: hmask[32], qs[64], scales[12], d (f16)
    b = _blocks(raw, 110)
    nb = b.shape[0]
    hm = b[:, 0:32]
    qs = b[:, 32:96]
    scales = _q3_k_scales(b[:, 96:108]).astype(np.float32)  # [nb, 16]
    d = _f16(b[:, 108:110])
    # Element h*128 + j*32 + s*16 + l: low bits qs[h*32 + s*16 + l] >> 2j, high
    # bit hmask[s*16 + l] bit (4h + j); subtract 4 when the high bit is clear.
    q = qs.reshape(nb, 2, 1, 2, 16)
    shifts = (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1, 1)
    low = ((q >> shifts) & 3).astype(np.int32)  # [nb, 2, 4, 2, 16]
    hbit = (4 * np.arange(2)[:, None] + np.arange(4)[None, :]).astype(np.uint8)  # [h, j]
    h = (hm.reshape(nb, 1, 1, 2, 16) >> hbit.reshape(1, 2, 4, 1, 1)) & 1
    v = (low - np.where(h == 0, 4, 0)).astype(np.float32)
    dl = d[:, None, None, None, None] * scales.reshape(nb, 2, 4, 2, 1)
    return (dl * v).astype(np.float32).reshape(-1)


def _k4_scale_min(s12):
    """uint8[nb, 12] -> (scales, mins) int32[nb, 8] (get_scale_min_k4)."""
    s12 = s12.astype(np.int32)
    sc = np.empty((s12.shape[0], 8), dtype=np.int32)
    mn = np.empty_like(sc)
    sc[:, 0:4] = s12[:, 0:4] & 63
    mn[:, 0:4] = s12[:, 4:8] & 63
    sc[:, 4:8] = (s12[:, 8:12] & 0xF) | ((s12[:, 0:4] >> 6) << 4)
    mn[:, 4:8] = (s12[:, 8:12] >> 4) | ((s12[:, 4:8] >> 6) << 4)
    return sc, mn


def deq_q4_k(raw):
    # block: d (f16), dmin (f16), scales[12], qs[128]
    b = _blocks(raw, 144)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])[:, None]
    dmin = _f16(b[:, 2:4])[:, None]
    sc, mn = _k4_scale_min(b[:, 4:16])
    qs = b[:, 16:144].reshape(nb, 4, 32)  # 4 chunks of 64 elements
    q = np.stack([qs & 0xF, qs >> 4], axis=2).astype(np.float32).reshape(nb, 8, 32)
    dl = (d * sc.astype(np.float32)).astype(np.float32)[:, :, None]
    ml = (dmin * mn.astype(np.float32)).astype(np.float32)[:, :, None]
    return (dl * q - ml).astype(np.float32).reshape(-1)


def deq_q5_k(raw):
    # block: d, dmin (f16), scales[12], qh[32], qs[128]
    b = _blocks(raw, 176)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])[:, None]
    dmin = _f16(b[:, 2:4])[:, None]
    sc, mn = _k4_scale_min(b[:, 4:16])
    qh = b[:, 16:48]  # [nb, 32]
    qs = b[:, 48:176].reshape(nb, 4, 32)
    low = np.stack([qs & 0xF, qs >> 4], axis=2).astype(np.int32).reshape(nb, 8, 32)
    # Sub-block k (0..7) takes its fifth bit from bit k of qh[l].
    hb = (qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1
    q = (low + 16 * hb.astype(np.int32)).astype(np.float32)
    dl = (d * sc.astype(np.float32)).astype(np.float32)[:, :, None]
    ml = (dmin * mn.astype(np.float32)).astype(np.float32)[:, :, None]
    return (dl * q - ml).astype(np.float32).reshape(-1)


def deq_q6_k(raw):
    # block: ql[128], qh[64], scales[16] (int8), d (f16)
    b = _blocks(raw, 210)
    nb = b.shape[0]
    ql = b[:, 0:128].reshape(nb, 2, 64).astype(np.int32)
    qh = b[:, 128:192].reshape(nb, 2, 32).astype(np.int32)
    sc = b[:, 192:208].view(np.int8).astype(np.float32).reshape(nb, 2, 8)
    d = _f16(b[:, 208:210])
    # Half n (128 elements), position l (0..31), quarter k (0..3):
    # element n*128 + k*32 + l, low nibble of ql[l + 32*(k&1)] (k<2) or high
    # nibble (k>=2), two high bits (qh[l] >> 2k) & 3, scale sc[n*8 + l//16 + 2k].
    lo = np.stack([ql[:, :, 0:32] & 0xF, ql[:, :, 32:64] & 0xF,
                   ql[:, :, 0:32] >> 4, ql[:, :, 32:64] >> 4], axis=2)  # [nb, 2, 4, 32]
    hi = np.stack([(qh >> (2 * k)) & 3 for k in range(4)], axis=2)  # [nb, 2, 4, 32]
    q = ((lo | (hi << 4)) - 32).astype(np.float32)
    l16 = np.arange(32) // 16  # [32]
    sidx = l16[None, :] + 2 * np.arange(4)[:, None]  # [4, 32]
    s = sc[:, :, sidx]  # [nb, 2, 4, 32]
    return (d[:, None, None, None] * s * q).astype(np.float32).reshape(-1)


DEQUANTIZERS = {
    "F32": deq_f32, "F16": deq_f16, "BF16": deq_bf16,
    "Q4_0": deq_q4_0, "Q4_1": deq_q4_1, "Q5_0": deq_q5_0, "Q5_1": deq_q5_1, "Q8_0": deq_q8_0,
    "Q2_K": deq_q2_k, "Q3_K": deq_q3_k, "Q4_K": deq_q4_k, "Q5_K": deq_q5_k, "Q6_K": deq_q6_k,
}


def dequantize(type_name, raw, n=None):
    """Raw bytes of a tensor of `type_name` -> float32[n]."""
    fn = DEQUANTIZERS.get(type_name)
    if fn is None:
        raise NotImplementedError(f"no dequantizer for {type_name}")
    out = fn(raw)
    if n is not None and out.size != n:
        raise ValueError(f"{type_name}: {out.size} values decoded, {n} expected")
    return out


def tensor_f32(t):
    """A gguf.Tensor -> float32 array shaped [ne[-1], ..., ne[0]] (numpy order)."""
    x = dequantize(t.type_name, t.data, t.n_elements)
    return x.reshape(tuple(reversed(t.ne)))
