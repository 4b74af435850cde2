"""The prepare stage: mixture/augmentation recipes (``driver``), rendered per shard (``render``); a prepare run's layout (``run``)."""
