"""The SVG and CSV writers: escaping, negative bars, formula-safe cells, money in major units."""
from billing_console.analytics.charts import chart_svg, chart_table, nice_step
from billing_console.analytics.csv import chart_csv
from billing_console.analytics.registry import Chart, Series


def _chart(**kw):
    base = dict(slug="t", section="S", title="T", caption="c", labels=["2026-01", "2026-02"],
                series=[Series("New", [1000, 0], tone=1), Series("Churned", [0, -250], tone=5),
                        Series("MRR", [1000, 750], kind="line", tone=0)], unit="money", currency="usd")
    base.update(kw)
    return Chart(**base)


def test_svg_draws_bars_both_sides_of_the_axis_and_a_line_without_script():
    svg = str(chart_svg(_chart()))
    assert svg.count("<rect") == 2 and "<polyline" in svg and "<script" not in svg
    assert 'class="an-c5"' in svg and "$2.50" in svg and "10 USD" in svg


def test_labels_from_stripe_are_escaped():
    svg = str(chart_svg(_chart(series=[Series("<script>alert(1)</script>", [1, 2])], unit="count")))
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_table_and_csv():
    chart = _chart()
    assert chart_table(chart)["rows"][1] == ["2026-02", "$0.00", "-$2.50", "$7.50"]
    lines = chart_csv(chart).splitlines()
    assert lines == ["period,New (USD),Churned (USD),MRR (USD)", "2026-01,10.00,0.00,10.00", "2026-02,0.00,-2.50,7.50"]


def test_csv_cells_a_spreadsheet_would_run_are_quoted():
    chart = _chart(series=[Series("=HYPERLINK(1)", [5, -5])], unit="count", labels=["@a", "-1"])
    assert chart_csv(chart).splitlines() == ["period,'=HYPERLINK(1)", "'@a,5", "-1,-5"]


def test_zero_decimal_currency_and_steps():
    chart = _chart(currency="jpy", series=[Series("MRR", [1500, 3000], kind="line")])
    assert chart_csv(chart).splitlines()[2] == "2026-02,3000"
    assert [nice_step(x) for x in (4, 10, 37, 900)] == [1, 2.5, 10, 250]
