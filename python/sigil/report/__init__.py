"""What was traded, told: the daemon's book from the database, the trade tally, the table and plots."""
