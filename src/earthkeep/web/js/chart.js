// uPlot time-series charts.
const uPlot = window.uPlot;
const COLORS = ["#2b6f77", "#c2185b", "#f57c00", "#5e35b1", "#2e7d32", "#455a64"];

/**
 * Draw ``series`` ({label, values}) over ``times`` (Date or ISO strings) into ``el``, replacing an older chart.
 * The uPlot instance is kept on ``el.chart`` (the tests read its data).
 */
export function lineChart(el, times, series, { height = 260, title, range } = {}) {
  if (el.chart) el.chart.destroy();
  el.replaceChildren();
  const xs = times.map((t) => (t instanceof Date ? t : new Date(t)).getTime() / 1000);
  const opts = {
    title, width: Math.max(320, el.clientWidth || 640), height,
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2,
      points: { show: xs.length < 50 }, scale: s.scale || "y" }))],
    axes: [{}, { scale: "y" }],
    scales: range ? { x: { time: true, range: () => range.map((t) => new Date(t).getTime() / 1000) } } : {},
  };
  el.chart = new uPlot(opts, [xs, ...series.map((s) => s.values)], el);
  return el.chart;
}
