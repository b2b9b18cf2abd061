"""The signal formulas of monitor spec §4.5, walked at their boundaries.

Each table is (inputs) -> expected, with the spec's default values passed in explicitly (the
formulas hold no thresholds): ε_abs BTC 0.0001, ε_rel 0.02, exit fire 25, CAS cap 60, trend band
5 over 3 periods, Di at least 5 ratios, ratio clamp 2, EC low < 16, Di high >= 60.
"""

from __future__ import annotations

import math

import pytest

from hlcore.jobs.monitor import formulas as f
from hlcore.jobs.monitor.formulas import Behaviour as B
from hlcore.jobs.monitor.formulas import Counts
from hlcore.jobs.monitor.formulas import Trend as T

EPS_ABS = 0.0001
EPS_REL = 0.02
FIRE = 25.0
CAP = 60.0
BAND = 5.0
PERIODS = 3
MIN_RATIOS = 5
CLAMP = 2.0
EC_LOW = 16.0
DI_HIGH = 60.0


# =========================================================================== ε


@pytest.mark.parametrize(("history", "eps"), [
    pytest.param([], EPS_ABS, id="no rows: eps_abs"),
    pytest.param([0.0, 0.0, 0.0], EPS_ABS, id="median 0: eps_abs"),
    pytest.param([0.001, 0.001, 0.001], EPS_ABS, id="0.02 x median below eps_abs: eps_abs"),
    pytest.param([1.0, 2.0, 3.0], 0.04, id="0.02 x median 2"),
    pytest.param([-1.0, -2.0, 3.0, 100.0], 0.05, id="median of |szi| (even count: mean of middle two)"),
    pytest.param([0.0, 0.0, 5.0], EPS_ABS, id="mostly flat wallet: median 0"),
])
def test_epsilon(history, eps):
    assert f.epsilon(history, EPS_ABS, EPS_REL) == pytest.approx(eps)


# =========================================================================== classification


@pytest.mark.parametrize(("prev", "cur", "eps", "expected"), [
    pytest.param(1.0, 1.2, 0.1, B.ADD_LONG, id="long adds beyond eps"),
    pytest.param(1.0, 1.1, 0.1, B.FLAT, id="delta exactly eps is not an add"),
    pytest.param(1.0, 1.1000001, 0.1, B.ADD_LONG, id="delta just above eps adds"),
    pytest.param(0.0, 0.5, 0.1, B.ADD_LONG, id="opening long from flat"),
    pytest.param(-1.0, -1.2, 0.1, B.ADD_SHORT, id="short adds beyond eps"),
    pytest.param(0.0, -0.5, 0.1, B.ADD_SHORT, id="opening short from flat"),
    pytest.param(1.0, -1.0, 0.1, B.ADD_SHORT, id="flip long to short: first match is AddShort"),
    pytest.param(-1.0, 1.0, 0.1, B.ADD_LONG, id="flip short to long: AddLong"),
    pytest.param(1.0, 0.5, 0.1, B.REDUCER, id="long reduces"),
    pytest.param(-1.0, -0.5, 0.1, B.REDUCER, id="short reduces (delta > eps but cur < 0)"),
    pytest.param(1.0, 0.0, 0.1, B.REDUCER, id="real close is a Reducer"),
    pytest.param(1.0, 0.9, 0.1, B.FLAT, id="reduction of exactly eps is flat"),
    pytest.param(1.0, 0.95, 0.1, B.FLAT, id="reduction inside eps is flat"),
    pytest.param(1.0, 1.0, 0.1, B.FLAT, id="unchanged"),
    pytest.param(0.0, 0.0, EPS_ABS, B.FLAT, id="flat at zero"),
    pytest.param(0.0, 0.00005, EPS_ABS, B.FLAT, id="dust below eps_abs"),
])
def test_classify(prev, cur, eps, expected):
    assert f.classify(prev, cur, eps) is expected


# =========================================================================== EC and CAS


@pytest.mark.parametrize(("counts", "ec", "cas"), [
    pytest.param(Counts(), 0.0, 50.0, id="N_total 0: EC 0, CAS 50"),
    pytest.param(Counts(flat=100), 0.0, 50.0, id="all flat"),
    pytest.param(Counts(add_long=100), 0.0, 100.0, id="all add long"),
    pytest.param(Counts(add_short=100), 0.0, 0.0, id="all add short"),
    pytest.param(Counts(add_long=60, add_short=10, flat=30), 0.0, 75.0, id="net +50 %: CAS 75"),
    pytest.param(Counts(reducers=25, add_long=75), 25.0, 87.5, id="EC 25 exactly: no cap"),
    pytest.param(Counts(reducers=26, add_long=74), 26.0, 60.0, id="EC 26: CAS capped at 60"),
    pytest.param(Counts(reducers=30, add_short=70), 30.0, 15.0, id="cap never raises a low CAS"),
    pytest.param(Counts(reducers=100), 100.0, 50.0, id="everyone reduces"),
])
def test_exit_cluster_and_alignment(counts, ec, cas):
    got_ec = f.exit_cluster(counts)
    assert got_ec == pytest.approx(ec)
    assert f.alignment(counts, got_ec, exit_fire_pct=FIRE, cas_cap=CAP) == pytest.approx(cas)


def test_alignment_is_clamped():
    """The formula alone stays in [0, 100]; the clamp guards a cap set above 100 or bad counts."""
    weird = Counts(add_long=3, add_short=-1)  # impossible counts, to reach past the bounds
    assert f.alignment(weird, 0.0, exit_fire_pct=FIRE, cas_cap=CAP) == 100.0
    assert f.alignment(Counts(add_short=3, add_long=-1), 0.0, exit_fire_pct=FIRE, cas_cap=CAP) == 0.0


def test_counts_of_behaviours():
    c = Counts.of([B.ADD_LONG, B.ADD_LONG, B.REDUCER, B.FLAT, B.ADD_SHORT])
    assert (c.add_long, c.add_short, c.reducers, c.flat, c.total) == (2, 1, 1, 1, 5)


# =========================================================================== trend


@pytest.mark.parametrize(("cas", "history", "expected"), [
    pytest.param(70.0, [60.0, 60.0, 60.0], T.RISING, id="above mean + 5: rising"),
    pytest.param(65.0, [60.0, 60.0, 60.0], T.FLAT, id="mean + 5 exactly: flat"),
    pytest.param(65.01, [60.0, 60.0, 60.0], T.RISING, id="just above the band"),
    pytest.param(55.0, [60.0, 60.0, 60.0], T.FLAT, id="mean - 5 exactly: flat"),
    pytest.param(54.99, [60.0, 60.0, 60.0], T.FALLING, id="just below the band"),
    pytest.param(40.0, [70.0, 50.0, 60.0], T.FALLING, id="mean of the three"),
    pytest.param(90.0, [60.0, 60.0], T.FLAT, id="only 2 stored values: flat"),
    pytest.param(90.0, [60.0, None, 60.0], T.FLAT, id="a gap among the 3: flat"),
    pytest.param(90.0, [], T.FLAT, id="no history: flat"),
])
def test_trend(cas, history, expected):
    assert f.trend(cas, history, band=BAND, periods=PERIODS) is expected


# =========================================================================== Di


@pytest.mark.parametrize(("prev", "cur", "eps", "expected"), [
    pytest.param(1.0, 1.5, 0.1, 0.5, id="relative move"),
    pytest.param(0.0, 1.0, 0.1, 2.0, id="from zero: divided by eps, clamped to +2"),
    pytest.param(0.0, -1.0, 0.1, -2.0, id="clamped to -2"),
    pytest.param(1.0, -2.0, 0.1, -2.0, id="flip beyond -2 clamps"),
    pytest.param(1.0, 3.0, 0.1, 2.0, id="+2 exactly stays"),
    pytest.param(-2.0, -1.0, 0.1, 0.5, id="short reducing: positive delta over |prev|"),
])
def test_ratio(prev, cur, eps, expected):
    assert f.ratio(prev, cur, eps, CLAMP) == pytest.approx(expected)


@pytest.mark.parametrize(("ratios", "expected"), [
    pytest.param([], 50.0, id="no ratios: 50"),
    pytest.param([0.1, 0.2, 0.3, 0.4], 50.0, id="4 ratios (< 5): 50"),
    pytest.param([0.3] * 5, 0.0, id="5 identical: 0"),
    pytest.param([-2.0] * 7, 0.0, id="all clamped identical: 0"),
    pytest.param([0.0, 0.0, 0.0, 0.0, 1.0], 100 * math.sqrt(0.2), id="sample sigma (n-1)"),
    pytest.param([0.1, 0.2, 0.3, 0.4, 0.5], 100 * 0.158113883, id="sigma of 0.1..0.5"),
    pytest.param([-2.0, 2.0, -2.0, 2.0, -2.0], 100.0, id="capped at 100"),
])
def test_dispersion(ratios, expected):
    assert f.dispersion(ratios, min_ratios=MIN_RATIOS) == pytest.approx(expected, rel=1e-6)


# =========================================================================== contributors, positioning


@pytest.mark.parametrize("counts", [
    Counts(add_long=1, add_short=1, reducers=1, flat=0),
    Counts(add_long=1, add_short=1, reducers=1, flat=4),
    Counts(add_long=33, add_short=33, reducers=33, flat=1),
    Counts(add_long=1, add_short=2, reducers=3, flat=191),
    Counts(flat=1),
])
def test_contributors_sum_to_100(counts):
    c = f.contributors(counts)
    assert c is not None and c.total_wallets == counts.total
    total = c.pct_add_long + c.pct_add_short + c.pct_reducers + c.pct_flat
    assert 99 <= total <= 101
    assert c.pct_reducers == pytest.approx(f.exit_cluster(counts), abs=0.005)


def test_no_contributors_without_wallets():
    assert f.contributors(Counts()) is None


def test_positioning():
    szis = [5.0, -1.0, 0.0, *[1.0] * 12]
    p = f.positioning(szis)
    assert (p.long_count, p.short_count, p.flat_count) == (13, 1, 1)
    assert p.net_szi == pytest.approx(16.0)
    assert (p.long_pct, p.short_pct, p.flat_pct) == (pytest.approx(86.67), pytest.approx(6.67), pytest.approx(6.67))
    # top 10 of |szi|: 5 + 1 (the short) + 8 x 1.0 = 14 of 18
    assert p.top10_share_pct == pytest.approx(14 / 18 * 100, abs=0.01)


def test_positioning_of_nobody():
    p = f.positioning([])
    assert (p.net_szi, p.long_count, p.long_pct, p.top10_share_pct) == (0, 0, 0.0, 0.0)


# =========================================================================== derived booleans


@pytest.mark.parametrize(("ec", "di", "trend", "previous", "expected"), [
    pytest.param(10.0, 20.0, T.FLAT, "flat", False, id="calm"),
    pytest.param(25.0, 20.0, T.FLAT, "flat", False, id="EC 25 is not above"),
    pytest.param(25.01, 20.0, T.FLAT, "flat", True, id="EC above the fire level"),
    pytest.param(10.0, 59.99, T.FLAT, "flat", False, id="Di just below high"),
    pytest.param(10.0, 60.0, T.FLAT, "flat", True, id="Di high"),
    pytest.param(10.0, 20.0, T.FALLING, "rising", True, id="turned falling from rising"),
    pytest.param(10.0, 20.0, T.FALLING, "flat", True, id="turned falling from flat"),
    pytest.param(10.0, 20.0, T.FALLING, "falling", False, id="still falling: not a turn"),
    pytest.param(10.0, 20.0, T.FALLING, None, True, id="no stored previous trend: treated as a turn"),
])
def test_tighten_stops(ec, di, trend, previous, expected):
    assert f.tighten_stops(ec, di, trend, previous, exit_fire_pct=FIRE, di_high=DI_HIGH) is expected


@pytest.mark.parametrize(("trend", "ec", "di", "allowed", "expected"), [
    pytest.param(T.RISING, 10.0, 20.0, True, True, id="rising, EC low, Di low, allowed"),
    pytest.param(T.FLAT, 10.0, 20.0, True, False, id="not rising"),
    pytest.param(T.RISING, 16.0, 20.0, True, False, id="EC 16 is not low"),
    pytest.param(T.RISING, 15.99, 59.99, True, True, id="just inside both bands"),
    pytest.param(T.RISING, 10.0, 60.0, True, False, id="Di high"),
    pytest.param(T.RISING, 10.0, 20.0, False, False, id="playbook/risk/health forbid it"),
])
def test_add_exposure(trend, ec, di, allowed, expected):
    assert f.add_exposure(trend, ec, di, ec_low=EC_LOW, di_high=DI_HIGH, trading_allowed=allowed) is expected
