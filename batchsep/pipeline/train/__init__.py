"""The train stage: mask models (``driver``, ``data``, ``batches``, ``outputs``, ``snmf*``), the emotion models
(``emotion*``) and the plain types they share (``types``)."""
