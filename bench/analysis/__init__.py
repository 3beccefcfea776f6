"""Reading result records back: comparisons, reports and the performance goals' verdicts."""
