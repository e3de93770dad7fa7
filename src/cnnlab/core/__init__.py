"""What every stage shares: config validation, atomic outputs, tracking, errors, threads."""
