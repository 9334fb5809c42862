"""The scenario eval: cases, runner, judge and report — an HTTP client of the product."""
