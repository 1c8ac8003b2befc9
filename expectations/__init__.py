"""Great Expectations suites, built in code, plus the custom Expectations they use.

Importing this package registers the custom Expectations (``expectations.custom``); do that
before loading any suite or validation result from a store, or GX silently drops them.
"""

from expectations import custom  # noqa: F401  (registration side effect is the point)
