"""The Streamlit script behind `hlcore dashboard`: it draws a `View` / `CopytraderPage` and nothing
else (monitor §4.7 D5: no query, no computation here).

Every element the tests look for sits in a keyed container (`st-key-hl-…` classes in the DOM):
hl-header, hl-halt-box, hl-banner, hl-panel-<ASSET>, hl-chart-<ASSET>-<H>h, hl-positioning-<ASSET>,
hl-alerts, hl-ct-page. The halt view draws the header and the halt box, then stops: its `View`
has no surface to draw.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from hlcore.dashboard.copytrader import CopytraderPage
from hlcore.dashboard.session import Session
from hlcore.dashboard.view import PANEL_BORDER, Chart, HaltBox, Header, Panel, Positioning, Surface, View
from hlcore.errors import HlcoreError

PAGES = ("Monitor", "Copy-trader")


@st.cache_resource
def session() -> Session:
    return Session.from_env()


def draw_header(h: Header) -> None:
    with st.container(key="hl-header"):
        st.markdown(f"### {h.icon} {h.view} · `{h.reason or ''}`")
        c1, c2, c3 = st.columns(3)
        c1.markdown(f"Last successful snapshot  \n**{h.last_success}**")
        c2.markdown(f"Last signal  \n**{h.last_signal}**")
        c3.markdown(f"Coverage  \n**{h.coverage or 'N/A'}**")
        with st.container(key="hl-refreshed"):
            st.caption(h.refreshed)


def draw_halt(box: HaltBox) -> None:
    with st.container(key="hl-halt-box"):
        st.error(f"## {box.title}")
        st.error("  \n".join(f"**{line}**" if i < 2 else line for i, line in enumerate(box.box)))
        gap = "N/A" if box.gap_min is None else f"{box.gap_min} min"
        st.markdown(f"**Last success:** {box.last_success} · **Gap:** {gap} · **Reason:** `{box.reason or ''}`")
        st.markdown("**Troubleshooting**\n" + "\n".join(f"1. {hint}" for hint in box.hints))
        with st.container(key="hl-system-alerts"):
            st.markdown("**Active system alerts**")
            for alert in box.system_alerts:
                st.markdown(alert.line())
            if not box.system_alerts:
                st.caption("None")


def draw_panel(panel: Panel) -> None:
    with st.container(key=f"hl-panel-{panel.asset}", border=True):
        st.markdown(f"#### {panel.title}")
        s = panel.signal
        if s is None:
            st.markdown(f"*{panel.text().split(': ', 1)[1]}*")
            return
        st.markdown(f"<div style='background:{s.colour};color:#fff;padding:6px 10px;border-radius:4px'>"
                    f"<b>{s.playbook}</b> / {s.risk_mode}</div>", unsafe_allow_html=True)
        st.markdown(f"**CAS {s.cas} {s.arrow}** · Dispersion {s.dispersion} · Exit {s.exit}")
        for flag in s.flags:
            st.markdown(f":red[**{flag}**]")
        st.caption(f"Add exposure: {'yes' if s.add_exposure else 'no'} · "
                   f"Tighten stops: {'yes' if s.tighten_stops else 'no'}")
        if s.contributors:
            st.caption(s.contributors.line())


def draw_chart(chart: Chart) -> None:
    """One asset's window: CAS, dispersion and exit cluster as coloured lines on one 0–100 axis,
    each with its dashed threshold lines in its colour, no gridlines, the latest value labelled at
    the right edge."""
    with st.container(key=f"hl-chart-{chart.asset}-{chart.hours}h", border=True):
        st.caption(f"{chart.asset} · last {chart.hours} h")
        points = pd.DataFrame([{"t": pd.to_datetime(ts, unit="ms", utc=True), "metric": s.label, "value": v}
                               for s in chart.series for ts, v in s.points])
        if points.empty:
            st.caption("No signals in this window")
            return
        lines = pd.DataFrame([{"metric": s.label, "y": v} for s in chart.series for v in s.lines])
        colour = alt.Color("metric:N", title=None, sort=[s.label for s in chart.series])
        x = alt.X("t:T", title=None, axis=alt.Axis(grid=False, format="%H:%M", tickCount=6))
        y = alt.Y("value:Q", title=None, scale=alt.Scale(domain=[0, 100]), axis=alt.Axis(grid=False))
        series = alt.Chart(points).mark_line(point=True).encode(x=x, y=y, color=colour,
                                                                 tooltip=["metric:N", "t:T", "value:Q"])
        rules = alt.Chart(lines).mark_rule(strokeDash=[4, 4], opacity=0.6).encode(y="y:Q", color=colour)
        last = points.sort_values("t").groupby("metric", as_index=False).tail(1)
        labels = alt.Chart(last).mark_text(align="left", dx=6, fontWeight="bold").encode(
            x="t:T", y="value:Q", color=colour, text=alt.Text("value:Q", format=".0f"))
        st.altair_chart(alt.layer(series, rules, labels).properties(height=180), width="stretch")


def draw_positioning(p: Positioning, caption: str) -> None:
    with st.container(key=f"hl-positioning-{p.asset}"):
        st.markdown(f"<div style='background:{p.colour};color:#fff;padding:6px 10px;border-radius:4px'>"
                    f"{p.line()}</div>", unsafe_allow_html=True)
        st.caption(caption)


def draw_surface(surface: Surface) -> None:
    if surface.banner:
        with st.container(key="hl-banner"):
            st.warning(surface.banner)
            st.markdown(f"<style>[class*='st-key-hl-panel-']{{border:{PANEL_BORDER};border-radius:6px}}"
                        "[class*='st-key-hl-chart-']{border:2px solid yellow;border-radius:6px}</style>",
                        unsafe_allow_html=True)
    positioning = {p.asset: p for p in surface.positioning}
    for col, panel in zip(st.columns(len(surface.panels)), surface.panels, strict=True):
        with col:
            draw_panel(panel)
            if panel.asset in positioning:
                draw_positioning(positioning[panel.asset], surface.positioning_caption)
    with st.container(key="hl-alerts"):
        st.markdown("**Recent alerts (24 h)**")
        for alert in surface.alerts:
            st.markdown(alert.line())
        if not surface.alerts:
            st.caption("None")
    for chart in surface.charts:
        draw_chart(chart)


def draw_view(v: View) -> None:
    draw_header(v.header)
    if v.halt is not None:
        draw_halt(v.halt)
        return  # D2: rendering stops after the halt box; the View has nothing more to draw
    if v.surface is not None:
        draw_surface(v.surface)


def draw_copytrader(page: CopytraderPage) -> None:
    with st.container(key="hl-ct-page"):
        st.markdown("### Copy-trader")
        if page.banner:
            (st.error if page.banner_level == "error" else st.warning)(page.banner)
        st.table(pd.DataFrame(page.facts, columns=["", "value"]).set_index(""))
        st.markdown("**Allowed gates:** " + (", ".join(f"`{g}`" for g in page.allowed_gates) or "none"))
        st.markdown(f"**Parked / UNKNOWN orders:** {len(page.orders)}")
        if page.orders:
            st.dataframe(pd.DataFrame(page.orders), hide_index=True)
        st.markdown(f"**Last {len(page.audit)} audit rows**")
        if page.audit:
            st.dataframe(pd.DataFrame(page.audit), hide_index=True)
        if page.error:
            st.caption(page.error)


def main() -> None:
    st.set_page_config(page_title="hlcore dashboard", page_icon="📊", layout="wide")
    try:
        s = session()
    except HlcoreError as exc:  # bad --config / --policy: one clear line, no traceback
        st.error(f"hlcore dashboard: {exc}")
        return
    wanted = st.query_params.get("page", PAGES[0])
    page = st.sidebar.radio("Page", PAGES, index=PAGES.index(wanted) if wanted in PAGES else 0, key="hl-page")
    refresh = int(s.workspace.settings.get("monitor.dashboard.refresh_sec"))

    @st.fragment(run_every=refresh)
    def monitor() -> None:
        draw_view(s.monitor())

    @st.fragment(run_every=refresh)
    def copytrader() -> None:
        draw_copytrader(s.copytrader())

    (monitor if page == PAGES[0] else copytrader)()


main()
