"""The enhance stage: the driver, the per-shard worker, one file's enhancement, the output folder, the enhancers
(checkpointed mask models, the zoo) and the emotion tagger."""
