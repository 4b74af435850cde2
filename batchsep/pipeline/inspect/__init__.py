"""The inspect stage: figures of a trained model (``driver``, ``plots``, ``latent``)."""
