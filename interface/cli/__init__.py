"""The `tokenledger` command."""
