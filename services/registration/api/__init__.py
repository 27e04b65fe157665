"""The registration's JSON API, one module per area: accounts, trust (assurances, support), domains, certificates.

`common` holds what the areas share: request schemas from `openapi.json`, bearer authentication and
the rate-limit answer.
"""
