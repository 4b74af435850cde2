"""Emotion tagging of a 16 kHz stream: voiced segments → features → classifier → per-segment and per-file labels.

:class:`EmotionTagger` loads an emotion model once; :meth:`EmotionTagger.stream` returns a
:class:`TagStream` that is fed the (enhanced) 16 kHz signal piece by piece — memory stays bounded by one
analysis window (60 s) whatever the file's length. The features are the model's: a log-mel image
(``emotion-cnn``, ``emotion-vae``) or utterance statistics (``emotion-stats``,
:func:`batchsep.dsp.emotion_stats.emotion_stats`).

**Aggregation.** Each voiced segment (energy VAD, :func:`batchsep.dsp.vad.voiced_segments`; 0.5 s to
3.2 s) gets the 8 class probabilities (calibrated when the model carries a fitted ``temperature``) and
its most probable label. The file's probabilities are the duration-weighted mean of its segments', and its
``emotion_label`` the most probable class of that mean.

**Low confidence.** When the file's top probability is below ``min_confidence``
(:data:`MIN_CONFIDENCE`, 0.4), ``emotion_warning`` says so ("emotion uncertain: …"): the label is then
a guess (on RAVDESS actors never trained on, 31 % of files fall below 0.4 and are right 38 % of the
time, against 64 % for the others; see docs/emotion.md). ``batchsep enhance`` / ``tag`` copy the warning into
the row's ``warning`` column; the label stays the most probable class so that evaluation still works.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from batchsep.dsp.emotion_stats import emotion_stats
from batchsep.dsp.mel import EmotionFeatureConfig, emotion_features
from batchsep.dsp.vad import voiced_segments
from batchsep.errors import ParameterError
from batchsep.io import checkpoint
from batchsep.models.base import deserialize
from batchsep.models.emotion import EMOTIONS, EmotionClassifier

TAG_SR = 16000
MIN_CONFIDENCE = 0.4
"""File-level top probability below which the tag is reported as uncertain (see the module docstring)."""


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
        min_confidence: float = MIN_CONFIDENCE,
    ) -> None:
        payload = checkpoint.read_checkpoint(model_uri)
        model = deserialize(payload)
        if not isinstance(model, EmotionClassifier):
            raise ParameterError(f"{model_uri}: {payload['model_name']!r} is not an emotion model")
        self.model = model.to(device).eval()
        self.device = device
        feats = payload.get("features") or (payload.get("config_extra") or {}).get("features")
        self.input_kind = str(getattr(model, "input_kind", "logmel"))
        if self.input_kind == "stats" or not feats:  # stats: segments as long as a log-mel window
            self.features = EmotionFeatureConfig()
        else:
            self.features = EmotionFeatureConfig.from_dict(feats)
        self.min_confidence = float(min_confidence)
        self.model_name, self.model_sha = payload["model_name"], payload["sha256"]
        self.window = int(window_s * TAG_SR)
        self.max_segment_s = self.features.duration_s
        self.min_segment_s = min(min_segment_s, self.max_segment_s / 2)

    def predict(self, segments: list[np.ndarray]) -> np.ndarray:
        """Class probabilities ``[n_segments, 8]`` for 16 kHz mono segments."""
        if not segments:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        if self.input_kind == "stats":
            x = np.stack([emotion_stats(s.astype(np.float32)) for s in segments]).astype(np.float32)
        else:
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
                "emotion_warning": "no voiced audio to tag with an emotion",
            }
        w = np.array([s["end_s"] - s["start_s"] for s in self.segments])
        p = np.array([[s["probs"][e] for e in EMOTIONS] for s in self.segments])
        mean = (w[:, None] * p).sum(0) / w.sum()
        label, top = EMOTIONS[int(mean.argmax())], float(mean.max())
        warning = None
        if top < self.tagger.min_confidence:
            warning = (f"emotion uncertain: top probability {top:.2f} ({label}) is below "
                       f"{self.tagger.min_confidence:.2f}")  # fmt: skip
        return {
            "emotion_label": label,
            "emotion_probs": {name: float(v) for name, v in zip(EMOTIONS, mean, strict=True)},
            "emotion_segments": self.segments,
            "emotion_warning": warning,
        }
