"""Great Expectations suites, built in code."""
