"""Read models built only from the event store, and the runner that keeps them current."""
