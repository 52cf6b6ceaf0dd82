"""Security probes (shared/spec/security-probes.md §3): TLS, authentication,
parser, availability and SMTP side.  See docs/security.md for the catalogue."""
