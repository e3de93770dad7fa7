"""What every stage shares: config validation, paths, atomic outputs, tracking, errors, threads."""
