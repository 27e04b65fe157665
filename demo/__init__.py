"""`python -m demo --out DIR` (`./dev demo --out DIR`): a member's walk through the running CA.

Only public interfaces are used: the registration HTTP API (the one the `cacert` CLI calls), the
mailbox HTTP API (to read what the CA mailed), the links in those mails, and the signer's public
status endpoints (CA certificates). See README.md ("The demo") and docs/walkthrough.md.
"""
