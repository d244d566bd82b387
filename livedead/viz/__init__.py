"""Pictures: overlays (numpy), figures (matplotlib), videos of the per-epoch overlays, schedule plots."""
