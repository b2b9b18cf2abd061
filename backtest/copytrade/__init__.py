"""The copy-trader backtest: simulated venue, exact path, figures and report (issue 17)."""
