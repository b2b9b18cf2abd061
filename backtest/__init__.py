"""The backtest harness: a policy run over recorded history, above the core (issue 16).

`backtest.history` owns the parquet dataset (write, read, synth, export); `backtest.feed` is the
seam where recorded observations replace the venue; `backtest.exact` runs the monitor's own jobs,
engine and scheduler over them; `backtest.report` and `backtest.sweep` answer the reviewer's
question. `hlcore/` imports nothing from here.
"""
