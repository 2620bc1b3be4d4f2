"""The tokenledger domain: aggregates, events and value objects. Pure: no I/O, no clock reads."""
