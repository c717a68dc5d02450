"""Planning: pure logic on the controller. From a playbook, a host's facts and its snapshot to
the exact operations that configure it, the reads that verify it, and the writes that restore
it. Nothing here talks to a host (docs/planning.md)."""
