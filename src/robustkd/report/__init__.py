"""Tables and figures of the papers, built from per-seed metrics files."""
