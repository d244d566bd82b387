"""The Hydra glue of the commands: resolvers, typed schemas, one-line errors, the sweep summary."""
