"""The engine: one host's session flow (``host``), waves and gates (``rollout``), the journal."""
