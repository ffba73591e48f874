"""A small GGUF (v2/v3) reader in plain Python + numpy, independent of Gantry's C code.

Design: parse the header, the key/values and the tensor infos with `struct`
from the file's bytes, then expose each tensor's data as a zero-copy slice of
one np.memmap of the whole file. Only numpy and the standard library are used
(no `gguf` pip package), so the reference shares no code with what it checks.
"""
import struct

import numpy as np

GGUF_MAGIC = b"GGUF"

# Key/value types of the GGUF specification.
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL = range(8)
T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(8, 13)

_SCALAR = {
    T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I",
    T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?", T_UINT64: "<Q", T_INT64: "<q",
    T_FLOAT64: "<d",
}
_NP = {
    T_UINT8: np.uint8, T_INT8: np.int8, T_UINT16: np.uint16, T_INT16: np.int16,
    T_UINT32: np.uint32, T_INT32: np.int32, T_FLOAT32: np.float32, T_BOOL: np.bool_,
    T_UINT64: np.uint64, T_INT64: np.int64, T_FLOAT64: np.float64,
}

# ggml tensor types: id -> (name, elements per block, bytes per block).
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 30: ("BF16", 1, 2),
}


class GGUFError(Exception):
    pass


class Tensor:
    """One tensor: name, ggml type id and name, ne (ne[0] = row length), raw bytes."""

    def __init__(self, name, ne, type_id, offset):
        self.name = name
        self.ne = tuple(ne)
        self.type_id = type_id
        self.offset = offset
        self.data = None  # np.uint8 view into the mapping

    @property
    def type_name(self):
        return GGML_TYPES[self.type_id][0]

    @property
    def n_elements(self):
        n = 1
        for d in self.ne:
            n *= d
        return n

    @property
    def nbytes(self):
        _, blk, size = GGML_TYPES[self.type_id]
        return self.n_elements // blk * size


class GGUFFile:
    def __init__(self, path):
        self.path = path
        self.kv = {}  # key -> python value (lists for arrays, numpy arrays for numeric arrays)
        self.kv_types = {}  # key -> (type, element type or None)
        self.tensors = {}  # name -> Tensor, in file order (dicts keep insertion order)
        self._mm = np.memmap(path, dtype=np.uint8, mode="r")
        self._buf = memoryview(self._mm)
        self._pos = 0
        self._parse()

    # -- low-level reads --
    def _read(self, fmt):
        size = struct.calcsize(fmt)
        if self._pos + size > len(self._buf):
            raise GGUFError(f"{self.path}: truncated at byte {self._pos}")
        v = struct.unpack_from(fmt, self._buf, self._pos)
        self._pos += size
        return v[0] if len(v) == 1 else v

    def _read_str(self):
        n = self._read("<Q")
        if self._pos + n > len(self._buf):
            raise GGUFError(f"{self.path}: string of {n} bytes past the end")
        s = bytes(self._buf[self._pos:self._pos + n]).decode("utf-8", errors="replace")
        self._pos += n
        return s

    def _read_value(self, t):
        if t == T_STRING:
            return self._read_str()
        if t == T_ARRAY:
            et = self._read("<I")
            n = self._read("<Q")
            if et in _NP:
                size = np.dtype(_NP[et]).itemsize * n
                if self._pos + size > len(self._buf):
                    raise GGUFError(f"{self.path}: array of {n} past the end")
                arr = np.frombuffer(self._buf, dtype=np.dtype(_NP[et]).newbyteorder("<"),
                                    count=n, offset=self._pos).copy()
                self._pos += size
                return arr
            return [self._read_value(et) for _ in range(n)]
        if t in _SCALAR:
            return self._read(_SCALAR[t])
        raise GGUFError(f"{self.path}: unknown value type {t}")

    def _parse(self):
        if bytes(self._buf[:4]) != GGUF_MAGIC:
            raise GGUFError(f"{self.path}: not a GGUF file")
        self._pos = 4
        self.version = self._read("<I")
        if self.version not in (2, 3):
            raise GGUFError(f"{self.path}: GGUF version {self.version} unsupported")
        n_tensors = self._read("<Q")
        n_kv = self._read("<Q")
        for _ in range(n_kv):
            key = self._read_str()
            t = self._read("<I")
            if t == T_ARRAY:
                et = struct.unpack_from("<I", self._buf, self._pos)[0]
                self.kv_types[key] = (t, et)
            else:
                self.kv_types[key] = (t, None)
            self.kv[key] = self._read_value(t)
        infos = []
        for _ in range(n_tensors):
            name = self._read_str()
            n_dims = self._read("<I")
            ne = [self._read("<Q") for _ in range(n_dims)]
            type_id = self._read("<I")
            offset = self._read("<Q")
            if type_id not in GGML_TYPES:
                raise GGUFError(f"{self.path}: tensor {name} has unknown type {type_id}")
            infos.append(Tensor(name, ne, type_id, offset))
        align = int(self.kv.get("general.alignment", 32))
        self.alignment = align
        self.data_offset = (self._pos + align - 1) // align * align
        for t in infos:
            start = self.data_offset + t.offset
            if start + t.nbytes > len(self._mm):
                raise GGUFError(f"{self.path}: tensor {t.name} ends past the end of the file")
            t.data = self._mm[start:start + t.nbytes]
            self.tensors[t.name] = t

    # -- convenience --
    def get(self, key, default=None):
        return self.kv.get(key, default)

    def arch(self):
        return self.kv["general.architecture"]
