"""A document's outcome (routed or in review) as the router and replay write it."""
