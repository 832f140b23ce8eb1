"""Feature definitions, one module per group (see ``docs/features.md`` for the generated list)."""
