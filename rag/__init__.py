"""Nova's knowledge service: ingest documents, retrieve passages, answer over HTTP."""
