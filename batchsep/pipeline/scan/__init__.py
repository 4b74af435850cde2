"""The scan stage: list the audio files under a URI and read their headers (``driver``)."""
