"""Figures for ``batchsep models`` (``batchsep/pretrained/zoo.json``): SDR gain on the VoiceBank pairs and
speed per core, for the shipped enhancer, each zoo model and a fusion.

    .venv/bin/python bench/zoo_card.py [--data ../shared/data] [--names default rnnoise ...]

- SDRi: bss_eval SDR (512-tap distortion filter, ``batchsep.evaluation.bss.sdr_only``) of the output
  minus that of the noisy input, against the clean reference, mean over the 6 VoiceBank+DEMAND pairs of
  ``pairs/voicebank_demand`` (16 kHz, real recordings, speaker p287), through ``enhance_file`` (the path
  ``batchsep enhance`` takes: 16 kHz → the model's rate → 16 kHz).
- speed: seconds of audio per second of this process's CPU time (one thread: ``torch`` and onnxruntime
  set to 1), over 30 s of LibriSpeech read speech at 16 kHz streamed through ``enhance_file`` with the
  model loaded once; CPU time, not wall time, so that other work on the machine does not count.

The full comparison (DNSMOS, PESQ, STOI, more data) is ``bench/zoo.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from batchsep.evaluation.bss import sdr_only
from batchsep.pipeline.enhance.enhancer import load_enhancer
from batchsep.pipeline.enhance.file import EnhanceOptions, enhance_file

NAMES = ["default", "rnnoise", "nsnet2", "deepfilternet3", "rnnoise+deepfilternet3"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--names", nargs="+", default=NAMES)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    noisy = sorted((data / "pairs" / "voicebank_demand" / "noisy").glob("*.flac"))
    speech = sorted((data / "speech" / "librispeech").rglob("*.flac"))[:40:4]
    with tempfile.TemporaryDirectory() as tmp:
        long = Path(tmp) / "speech30.wav"
        x = np.concatenate([sf.read(f, dtype="float32")[0] for f in speech])[: 30 * 16000]
        sf.write(long, x, 16000)
        out = {}
        for name in args.names:
            enh, _, sha = load_enhancer(name, num_threads=1)
            opts = EnhanceOptions()
            gains = []
            for f in noisy:
                y_path = Path(tmp) / "y.wav"
                assert enhance_file(str(f), str(y_path), enh, opts)["status"] == "ok"
                y = sf.read(y_path, dtype="float32")[0]
                xn = sf.read(f, dtype="float32")[0]
                c = sf.read(str(f).replace("/noisy/", "/clean/"), dtype="float32")[0]
                gains.append(sdr_only(c, y) - sdr_only(c, xn))
            t = time.process_time()
            enhance_file(str(long), str(Path(tmp) / "y30.wav"), enh, opts)
            cpu = time.process_time() - t
            out[name] = {
                "sha256": sha,
                "voicebank_sdri_db": round(float(np.mean(gains)), 2),
                "voicebank_sdri_db_per_file": [round(float(g), 2) for g in gains],
                "x_real_time_per_core": round(30.0 / cpu, 1),
            }
            print(name, json.dumps(out[name]), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
