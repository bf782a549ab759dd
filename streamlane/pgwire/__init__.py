"""PostgreSQL wire protocol served by the warehouse process."""
