"""onnxruntime-genai's C API, for the calls the onnxruntime engine makes.

Its Python binding holds the GIL through every forward pass (measured: another thread waits 15 ms
for a 1 ms sleep while a token decodes). In the daemon that stalls the event loop for each step: a
streamed delta waits for the next forward before it can be written, and new requests, cancellations
and `tokenize` wait too. ctypes releases the GIL around each foreign call, so through the same
library (the one the binding itself loads) a forward pass lets the rest of the daemon run.
"""

from __future__ import annotations

import ctypes
import json
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

_P = ctypes.c_void_p
_SIZE = ctypes.c_size_t
_LIBRARY_NAMES = ("libonnxruntime-genai.so", "libonnxruntime-genai.dylib", "onnxruntime-genai.dll")
# OgaElementType values (ort_genai_c.h) of the logits a model can produce
_FLOAT32, _FLOAT16 = 1, 10

_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "OgaResultGetError": ([_P], ctypes.c_char_p),
    "OgaDestroyResult": ([_P], None),
    "OgaCreateConfig": ([ctypes.c_char_p, ctypes.POINTER(_P)], _P),
    "OgaConfigOverlay": ([_P, ctypes.c_char_p], _P),
    "OgaDestroyConfig": ([_P], None),
    "OgaCreateModelFromConfig": ([_P, ctypes.POINTER(_P)], _P),
    "OgaDestroyModel": ([_P], None),
    "OgaCreateGeneratorParams": ([_P, ctypes.POINTER(_P)], _P),
    "OgaGeneratorParamsSetSearchNumber": ([_P, ctypes.c_char_p, ctypes.c_double], _P),
    "OgaDestroyGeneratorParams": ([_P], None),
    "OgaCreateGenerator": ([_P, _P, ctypes.POINTER(_P)], _P),
    "OgaDestroyGenerator": ([_P], None),
    "OgaGenerator_AppendTokens": ([_P, ctypes.POINTER(ctypes.c_int32), _SIZE], _P),
    "OgaGenerator_GetLogits": ([_P, ctypes.POINTER(_P)], _P),
    "OgaGenerator_GetOutput": ([_P, ctypes.c_char_p, ctypes.POINTER(_P)], _P),
    "OgaGenerator_RewindTo": ([_P, _SIZE], _P),
    "OgaGenerator_GetSequenceCount": ([_P, _SIZE], _SIZE),
    "OgaTensorGetType": ([_P, ctypes.POINTER(ctypes.c_int)], _P),
    "OgaTensorGetShapeRank": ([_P, ctypes.POINTER(_SIZE)], _P),
    "OgaTensorGetShape": ([_P, ctypes.POINTER(ctypes.c_int64), _SIZE], _P),
    "OgaTensorGetData": ([_P, ctypes.POINTER(_P)], _P),
    "OgaDestroyTensor": ([_P], None),
    "OgaCreateAdapters": ([_P, ctypes.POINTER(_P)], _P),
    "OgaLoadAdapter": ([_P, ctypes.c_char_p, ctypes.c_char_p], _P),
    "OgaUnloadAdapter": ([_P, ctypes.c_char_p], _P),
    "OgaDestroyAdapters": ([_P], None),
    "OgaSetActiveAdapter": ([_P, _P, ctypes.c_char_p], _P),
}

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


class OgaError(RuntimeError):
    """onnxruntime-genai reported an error (its message)."""


def library() -> ctypes.CDLL:
    """The library the onnxruntime_genai package ships, with the signatures declared."""
    global _lib
    if _lib is not None:  # every call on the decode path comes here: no lock once loaded
        return _lib
    with _lib_lock:
        if _lib is None:
            import onnxruntime_genai  # its binding loads the library (and, on Windows, onnxruntime's)

            folder = Path(onnxruntime_genai.__file__).parent
            path = next((folder / n for n in _LIBRARY_NAMES if (folder / n).is_file()), None)
            if path is None:
                raise OgaError(f"onnxruntime-genai's C library is not in {folder}")
            lib = ctypes.CDLL(str(path))
            for name, (args, result) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.argtypes, fn.restype = args, result
            _lib = lib
        return _lib


def _check(result: int | None) -> None:
    if result:
        lib = library()
        message = (lib.OgaResultGetError(result) or b"unknown error").decode(errors="replace")
        lib.OgaDestroyResult(result)
        raise OgaError(message)


def _destroy(destructor: str, handle: int) -> None:
    getattr(library(), destructor)(handle)


class _Handle:
    """An owned C object, destroyed by close() or when garbage collected."""

    def __init__(self, handle: _P, destructor: str):
        if not handle.value:
            raise OgaError(f"onnxruntime-genai returned no object (for {destructor})")
        self.handle = handle
        self._finalizer = weakref.finalize(self, _destroy, destructor, handle.value)

    def close(self) -> None:
        self._finalizer()


class Model(_Handle):
    def __init__(self, folder: Path, overlay: dict[str, Any]):
        lib = library()
        config = _P()
        _check(lib.OgaCreateConfig(str(folder).encode(), ctypes.byref(config)))
        try:
            _check(lib.OgaConfigOverlay(config, json.dumps(overlay).encode()))
            model = _P()
            _check(lib.OgaCreateModelFromConfig(config, ctypes.byref(model)))
        finally:
            lib.OgaDestroyConfig(config)
        super().__init__(model, "OgaDestroyModel")


class Adapters(_Handle):
    """LoRA adapters (.onnx_adapter files) of a model exported with LoRA inputs."""

    def __init__(self, model: Model):
        adapters = _P()
        _check(library().OgaCreateAdapters(model.handle, ctypes.byref(adapters)))
        super().__init__(adapters, "OgaDestroyAdapters")
        self._model = model

    def load(self, path: Path, name: str) -> None:
        _check(library().OgaLoadAdapter(self.handle, str(path).encode(), name.encode()))

    def unload(self, name: str) -> None:
        _check(library().OgaUnloadAdapter(self.handle, name.encode()))


class Generator(_Handle):
    """One sequence's KV state (up to `max_length` tokens) and the logits of its last forward."""

    def __init__(self, model: Model, max_length: int):
        lib = library()
        params = _P()
        _check(lib.OgaCreateGeneratorParams(model.handle, ctypes.byref(params)))
        try:
            _check(lib.OgaGeneratorParamsSetSearchNumber(params, b"max_length", float(max_length)))
            generator = _P()
            _check(lib.OgaCreateGenerator(model.handle, params, ctypes.byref(generator)))
        finally:
            lib.OgaDestroyGeneratorParams(params)
        super().__init__(generator, "OgaDestroyGenerator")
        self._model = model  # the model outlives its generators

    def append(self, ids: list[int]) -> None:
        """Run `ids` (the GIL is released meanwhile)."""
        arr = np.ascontiguousarray(ids, dtype=np.int32)
        _check(library().OgaGenerator_AppendTokens(
            self.handle, arr.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), arr.size))

    def last_logits(self) -> np.ndarray:
        """The logits after the last token run: [vocab] float32."""
        tensor = _P()
        _check(library().OgaGenerator_GetLogits(self.handle, ctypes.byref(tensor)))
        return _to_numpy(tensor).reshape(-1)

    def output(self, name: str) -> np.ndarray:
        """A copy of the last forward's output `name` (as the model gives it, float32)."""
        tensor = _P()
        _check(library().OgaGenerator_GetOutput(self.handle, name.encode(), ctypes.byref(tensor)))
        return _to_numpy(tensor)

    def rewind(self, length: int) -> None:
        _check(library().OgaGenerator_RewindTo(self.handle, length))

    def set_active_adapter(self, adapters: Adapters, name: str) -> None:
        """Run every later forward pass with LoRA adapter `name` (before the first one)."""
        _check(library().OgaSetActiveAdapter(self.handle, adapters.handle, name.encode()))
        self._adapters = adapters  # they outlive the generator

    def token_count(self) -> int:
        """How many tokens' state the generator holds."""
        return int(library().OgaGenerator_GetSequenceCount(self.handle, 0))


def _to_numpy(tensor: _P) -> np.ndarray:
    """Copy an OgaTensor into a float32 array and destroy the tensor."""
    lib = library()
    try:
        kind = ctypes.c_int()
        _check(lib.OgaTensorGetType(tensor, ctypes.byref(kind)))
        dtypes = {_FLOAT32: np.float32, _FLOAT16: np.float16}
        if kind.value not in dtypes:
            raise OgaError(f"unexpected tensor element type {kind.value}")
        rank = _SIZE()
        _check(lib.OgaTensorGetShapeRank(tensor, ctypes.byref(rank)))
        shape = (ctypes.c_int64 * rank.value)()
        _check(lib.OgaTensorGetShape(tensor, shape, rank.value))
        data = _P()
        _check(lib.OgaTensorGetData(tensor, ctypes.byref(data)))
        dims = [int(d) for d in shape]
        count = int(np.prod(dims)) if dims else 1
        dtype = np.dtype(dtypes[kind.value])
        if count == 0 or not data.value:
            return np.zeros(dims, dtype=np.float32)
        out = np.empty(dims, dtype=dtype)
        ctypes.memmove(out.ctypes.data, data.value, out.nbytes)  # one copy, made before destroying
        return out.astype(np.float32, copy=False)
    finally:
        lib.OgaDestroyTensor(tensor)
