"""Reading result records back: comparisons of variants, the report's plots, and the
verdicts of the performance goals.

The modules, one job each, each importing only those above it:

- `records`: a result record parsed into a row (its point, environment, workload and
  measurements);
- `stats`: rows grouped and summarised against a baseline (speed-ups, spreads, quality
  parity, scaling, the best variant per configuration);
- `render`: a comparison as console tables, markdown, CSV or JSON;
- `compare`: `gan-bench compare`;
- `report`: `gan-bench report`, PNG plots and report.md;
- `goals_file`: the performance goals (results/goals.json) read and checked;
- `goals`: `gan-bench goals`, each goal met or missed on a measurement folder (goals.md).
"""
