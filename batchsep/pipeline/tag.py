"""Emotion tagging of a 16 kHz stream: voiced segments → log-mel → classifier → per-segment and per-file labels.

:class:`EmotionTagger` loads an emotion model once; :meth:`EmotionTagger.stream` returns a
:class:`TagStream` that is fed the (enhanced) 16 kHz signal piece by piece — memory stays bounded by one
analysis window (60 s) whatever the file's length. Each voiced segment (at most the model's input span,
3.2 s by default) gets a label and the 8 class probabilities; the file gets the duration-weighted mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from batchsep.dsp.mel import EmotionFeatureConfig, emotion_features
from batchsep.dsp.vad import voiced_segments
from batchsep.errors import ParameterError
from batchsep.io import checkpoint
from batchsep.models.base import deserialize
from batchsep.models.emotion import EMOTIONS, EmotionClassifier

TAG_SR = 16000


class EmotionTagger:
    """An emotion classifier plus its feature configuration, loaded once.

    Parameters
    ----------
    model_uri : str
        ``default-emotion`` (shipped) or a trained emotion model folder.
    window_s : float
        Length of audio analysed at once (bounds memory for long files).
    """

    def __init__(
        self,
        model_uri: str = "default-emotion",
        *,
        device: str = "cpu",
        window_s: float = 60.0,
        min_segment_s: float = 0.5,
    ) -> None:
        payload = checkpoint.read_checkpoint(model_uri)
        model = deserialize(payload)
        if not isinstance(model, EmotionClassifier):
            raise ParameterError(f"{model_uri}: {payload['model_name']!r} is not an emotion model")
        self.model = model.to(device).eval()
        self.device = device
        feats = payload.get("features") or (payload.get("config_extra") or {}).get("features")
        self.features = EmotionFeatureConfig.from_dict(feats) if feats else EmotionFeatureConfig()
        self.model_name, self.model_sha = payload["model_name"], payload["sha256"]
        self.window = int(window_s * TAG_SR)
        self.max_segment_s = self.features.duration_s
        self.min_segment_s = min(min_segment_s, self.max_segment_s / 2)

    def predict(self, segments: list[np.ndarray]) -> np.ndarray:
        """Class probabilities ``[n_segments, 8]`` for 16 kHz mono segments."""
        if not segments:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        x = np.stack([emotion_features(s.astype(np.float32), self.features) for s in segments])
        with torch.inference_mode():
            p = self.model.predict_proba(torch.from_numpy(x).to(self.device))
        return p.cpu().numpy()

    def stream(self) -> TagStream:
        return TagStream(self)


class TagStream:
    """Accumulates a 16 kHz signal and tags its voiced segments window by window."""

    def __init__(self, tagger: EmotionTagger) -> None:
        self.tagger = tagger
        self.buf: list[np.ndarray] = []
        self.buffered = 0
        self.offset = 0  # samples already analysed
        self.segments: list[dict[str, Any]] = []

    def feed(self, piece: np.ndarray) -> None:
        self.buf.append(np.asarray(piece, dtype=np.float32))
        self.buffered += piece.shape[0]
        if self.buffered >= self.tagger.window:
            self._analyse()

    def _analyse(self) -> None:
        if not self.buffered:
            return
        x = np.concatenate(self.buf)
        self.buf, self.buffered = [], 0
        t = self.tagger
        spans = voiced_segments(x, TAG_SR, max_len_s=t.max_segment_s, min_len_s=t.min_segment_s)
        probs = t.predict([x[s:e] for s, e in spans])
        for (s, e), p in zip(spans, probs, strict=True):
            self.segments.append(
                {
                    "start_s": (self.offset + s) / TAG_SR,
                    "end_s": (self.offset + e) / TAG_SR,
                    "label": EMOTIONS[int(p.argmax())],
                    "probs": {name: float(v) for name, v in zip(EMOTIONS, p, strict=True)},
                }
            )
        self.offset += x.shape[0]

    def result(self) -> dict[str, Any]:
        """Row fields: ``emotion_label``, ``emotion_probs``, ``emotion_segments`` (+ a warning if none)."""
        self._analyse()
        if not self.segments:
            return {
                "emotion_label": None,
                "emotion_probs": None,
                "emotion_segments": [],
                "emotion_warning": "no voiced audio to tag",
            }
        w = np.array([s["end_s"] - s["start_s"] for s in self.segments])
        p = np.array([[s["probs"][e] for e in EMOTIONS] for s in self.segments])
        mean = (w[:, None] * p).sum(0) / w.sum()
        return {
            "emotion_label": EMOTIONS[int(mean.argmax())],
            "emotion_probs": {name: float(v) for name, v in zip(EMOTIONS, mean, strict=True)},
            "emotion_segments": self.segments,
            "emotion_warning": None,
        }
