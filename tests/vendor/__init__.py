"""Stand-ins for vendor systems: local servers that answer (and misbehave) as vendors document,
and the test connectors that talk to them."""
