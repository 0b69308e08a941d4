"""Developer scripts for Triage (sample-data generation, a minimal PDF writer)."""
