"""``memspec experiment NAME``: the seed article's quantitative claims, one module each."""
