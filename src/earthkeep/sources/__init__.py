"""Sources: each turns a request for data into a plan of what to fetch."""
