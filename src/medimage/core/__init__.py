"""The pure core: rules and decisions with no AWS imports, unit-tested without mocks."""
