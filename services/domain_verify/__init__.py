"""domain_verify: proves a member controls a domain by a single-use link mailed to an official contact."""
