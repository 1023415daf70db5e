"""The fleet: sensors publish their epochs over NATS JetStream, a collector merges them network-wide (docs/fleet.md)."""
