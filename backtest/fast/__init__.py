"""The monitor backtest's fast path: the measuring half once (cached features), the deciding half per variant.

`features` runs the monitor's measuring code (universe and snapshot jobs, `SignalJob.measure`) once
over a window and stores what it measured per minute and per signal slot; `decide` replays those
features through the deciding code (health, dirty and signal-lock machines, the signal job's verdicts,
alert gates) on a scratch database for each settings variant. See docs/decisions.md, "Round 4 — fast".
"""
