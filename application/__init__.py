"""The ledger application service: commands, queries, verification and usage recording."""
