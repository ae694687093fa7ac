"""Stand-ins for external services, for tests and the local stack."""
