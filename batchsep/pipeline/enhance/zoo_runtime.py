"""Runtimes of the zoo enhancers: the packages' native libraries (ctypes) and ONNX graphs (onnxruntime),
wrapped as stateful frame processes for :class:`~batchsep.dsp.framestream.FrameStream`.

Which files are loaded, and their checksums, is :mod:`batchsep.pipeline.enhance.zoo`'s business; this module only
runs them. Every runtime here is single-threaded per worker: RNNoise and DeepFilterNet's C runtime (tract)
start no threads of their own (``tests/unit/pipeline/test_zoo.py`` counts ``/proc/self/task``), and an
onnxruntime session gets ``intra_op_num_threads = num_threads`` (1 by default) and one inter-op thread.
"""

from __future__ import annotations

import ctypes
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from batchsep.dsp.framestream import FrameProcess, FrameStream, run_stream
from batchsep.models.nsnet2 import NsNet2Frames

_FLOAT_P = ctypes.POINTER(ctypes.c_float)
INT16_SCALE = 32768.0
"""RNNoise works on 16-bit sample values: float input is multiplied by this, and its output divided."""


class StreamingEnhancer:
    """A streaming model at its own ``sample_rate``: :meth:`stream` runs one signal frame by frame.

    Also callable on windows ``[B, n]`` (each row is a signal of its own), so it can stand where a window
    enhancer is expected.
    """

    def __init__(
        self,
        name: str,
        *,
        sample_rate: int,
        hop: int,
        delay: int,
        make_process: Callable[[], FrameProcess],
        max_frames: int = 100,
    ) -> None:
        self.name, self.sample_rate, self.hop, self.delay = name, sample_rate, hop, delay
        self.make_process, self.max_frames = make_process, max_frames

    def stream(self) -> FrameStream:
        """A fresh stream (state at zero) for one signal at :attr:`sample_rate`."""
        return FrameStream(
            self.make_process(), hop=self.hop, delay=self.delay, max_frames=self.max_frames
        )

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(windows, np.float32))
        return np.stack([run_stream(self.stream(), row) for row in x])


# --------------------------------------------------------------------------------------------- RNNoise
class RnnoiseLibrary:
    """``librnnoise`` (with its built-in model) through ctypes."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, _FLOAT_P, _FLOAT_P]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        self.lib = lib
        self.frame_size = int(lib.rnnoise_get_frame_size())

    def process(self) -> FrameProcess:
        return _RnnoiseFrames(self)


class _RnnoiseFrames:
    def __init__(self, owner: RnnoiseLibrary) -> None:
        self.lib, self.n = owner.lib, owner.frame_size
        self.state = self.lib.rnnoise_create(None)
        self.out = np.zeros(self.n, np.float32)

    def __call__(self, hops: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(hops, np.float32) * np.float32(INT16_SCALE)
        y = np.empty_like(x)
        out_p = self.out.ctypes.data_as(_FLOAT_P)
        for i in range(x.shape[0]):
            self.lib.rnnoise_process_frame(self.state, out_p, x[i].ctypes.data_as(_FLOAT_P))
            y[i] = self.out
        return y / np.float32(INT16_SCALE)

    def __del__(self) -> None:
        if getattr(self, "state", None):
            self.lib.rnnoise_destroy(self.state)
            self.state = None


# ---------------------------------------------------------------------------------------- DeepFilterNet
class DeepFilterLibrary:
    """DeepFilterNet's C runtime (``libdeepfilter``, tract) with a model archive, through ctypes.

    The runtime reads the archive from a path at each ``df_create`` (each file): it gets a private copy
    of the checked bytes, removed when this object goes.
    """

    def __init__(self, path: Path, archive: bytes, *, atten_lim_db: float = 100.0) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="batchsep-dfn-")
        model = Path(self._dir.name) / "model.tar.gz"
        model.write_bytes(archive)
        lib = ctypes.CDLL(str(path))
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOAT_P, _FLOAT_P]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        self.lib, self.model, self.atten_lim_db = lib, model, atten_lim_db
        st = self.create()
        self.frame_size = int(lib.df_get_frame_length(st))
        lib.df_free(st)

    def create(self) -> Any:
        st = self.lib.df_create(str(self.model).encode(), self.atten_lim_db, None)
        if not st:
            raise RuntimeError(f"df_create failed for {self.model}")
        return st

    def process(self) -> FrameProcess:
        return _DeepFilterFrames(self)


class _DeepFilterFrames:
    def __init__(self, owner: DeepFilterLibrary) -> None:
        self.lib, self.n = owner.lib, owner.frame_size
        self.state = owner.create()
        self.out = np.zeros(self.n, np.float32)

    def __call__(self, hops: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(hops, np.float32)
        y = np.empty_like(x)
        out_p = self.out.ctypes.data_as(_FLOAT_P)
        for i in range(x.shape[0]):
            self.lib.df_process_frame(self.state, x[i].ctypes.data_as(_FLOAT_P), out_p)
            y[i] = self.out
        return y

    def __del__(self) -> None:
        if getattr(self, "state", None):
            self.lib.df_free(self.state)
            self.state = None


# --------------------------------------------------------------------------------------------- NSNet2
def onnx_providers(device: str, available: list[str]) -> list[str]:
    """onnxruntime execution providers for ``device``: CUDA first when asked for and installed, else CPU."""
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def stateful_gru_graph(model: Any) -> tuple[Any, list[tuple[str, str, int]]]:
    """Expose every GRU's initial and final hidden state of an ONNX graph as a graph input and output.

    Returns the edited model and ``(input name, output name, hidden size)`` per GRU, so the graph can be
    run a block of frames at a time with its state carried over (identical to one whole-sequence run).
    """
    import onnx

    states = []
    for k, node in enumerate(n for n in model.graph.node if n.op_type == "GRU"):
        hidden = next(a.i for a in node.attribute if a.name == "hidden_size")
        name = f"batchsep_h{k}"
        while len(node.input) < 6:
            node.input.append("")
        node.input[5] = name
        model.graph.input.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, 1, hidden])
        )
        if len(node.output) < 2 or not node.output[1]:
            while len(node.output) < 2:
                node.output.append("")
            node.output[1] = f"{name}_out"
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(
                node.output[1], onnx.TensorProto.FLOAT, [1, 1, hidden]
            )
        )
        states.append((name, node.output[1], hidden))
    return model, states


class NsNet2Session:
    """The NSNet2 ONNX graph, made stateful, in one onnxruntime session."""

    def __init__(self, graph: bytes, *, device: str = "cpu", num_threads: int | None = 1) -> None:
        import onnx
        import onnxruntime as ort

        model, self.states = stateful_gru_graph(onnx.load_from_string(graph))
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, num_threads or 1)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.providers = onnx_providers(device, ort.get_available_providers())
        self.session = ort.InferenceSession(model.SerializeToString(), so, providers=self.providers)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def process(self) -> FrameProcess:
        state = {name: np.zeros((1, 1, h), np.float32) for name, _, h in self.states}
        outputs = [self.output] + [out for _, out, _ in self.states]

        def net(feat: np.ndarray) -> np.ndarray:
            gain, *hs = self.session.run(outputs, {self.input: feat, **state})
            for (name, _, _), h in zip(self.states, hs):
                state[name] = h
            return np.asarray(gain)

        return NsNet2Frames(net)
