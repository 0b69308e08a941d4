"""PostgreSQL storage: the review queue and the router's durable routing decisions."""
