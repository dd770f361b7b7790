"""Statistics over records: per-chunk partials, merged in bounded memory, then finalised."""
