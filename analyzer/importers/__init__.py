"""Converters from other tools' configurations into our rollout spec (pure: data in, data out)."""
