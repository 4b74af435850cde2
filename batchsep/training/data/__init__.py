"""Torch datasets of training: feature shards (``features``) and the emotion corpus (``emotion``)."""
