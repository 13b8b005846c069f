// Charts drawn with uPlot (installed from npm by the build). Colours are the Okabe-Ito palette, which readers with
// any common colour-vision deficiency can tell apart; nothing is told by colour alone.

import uPlot from '/lib/uPlot.esm.js';

export const colours = {
  blue: '#0072B2',
  orange: '#E69F00',
  sky: '#56B4E9',
  green: '#009E73',
  vermillion: '#D55E00',
  // For text and thin lines on white, which need more contrast than the palette's vermillion (3.9:1) and sky (2.3:1)
  // give: 5.5:1 and 4.4:1.
  vermillionText: '#B34700',
  skyLine: '#2A7FB8',
  purple: '#CC79A7',
  grey: '#6b6b6b',
};

const seconds = time => new Date(time).getTime() / 1000;

/** A window's length in seconds, by the trend's resolution; raw readings have none. */
const windowSeconds = { '1m': 60, '1h': 3600, '1d': 86400 };

/**
 * The chart's columns from a trend's windows, with an empty row wherever a window is missing (the API lists only
 * windows that hold readings), so a stretch without readings (a watch charging overnight) is drawn as a gap, not as a
 * line straight across it.
 */
export function withGaps(points, resolution) {
  const step = windowSeconds[resolution];
  const columns = [[], [], [], []];
  let last = null;
  for (const point of points) {
    const start = seconds(point.start);
    // Half a window's leeway: a day across a clock change is 23 or 25 hours long.
    if (step && last !== null && start - last > 1.5 * step) {
      columns[0].push(last + step);
      for (const column of columns.slice(1)) column.push(null);
    }

    columns[0].push(start);
    columns[1].push(point.min);
    columns[2].push(point.max);
    columns[3].push(point.mean);
    last = start;
  }

  return columns;
}

/**
 * Where a value stands alone (no value either side), so it gets a point when the series' points are not shown (a
 * line needs two values): a lone window between gaps, a single reading in the range.
 */
function loneValues(u, seriesIndex, shown) {
  if (shown) return null;
  const values = u.data[seriesIndex];
  const lone = [];
  for (let i = 0; i < values.length; i++) {
    if (values[i] !== null && values[i] !== undefined && (values[i - 1] ?? null) === null && (values[i + 1] ?? null) === null) lone.push(i);
  }

  return lone.length > 0 ? lone : null;
}

/** A dashed horizontal line at a level of the value axis, labelled at its left end (an alert threshold, a goal). */
function dashedLevel(u, level, label) {
  const y = u.valToPos(level, 'y', true);
  if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
  const context = u.ctx;
  context.save();
  context.strokeStyle = colours.vermillionText;
  context.fillStyle = colours.vermillionText;
  context.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
  context.lineWidth = 1.5 * devicePixelRatio;
  context.beginPath();
  context.moveTo(u.bbox.left, y);
  context.lineTo(u.bbox.left + u.bbox.width, y);
  context.stroke();
  context.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
  context.textAlign = 'left';
  context.textBaseline = 'bottom';
  context.fillText(label, u.bbox.left + 4 * devicePixelRatio, y - 4 * devicePixelRatio);
  context.restore();
}

/** Draws a chart into container, first destroying the one drawn there before (uPlot holds listeners until then). */
function mount(container, options, data) {
  container.telemetryChart?.destroy();
  container.replaceChildren();
  container.telemetryChart = new uPlot(options, data, container);
  return container.telemetryChart;
}

function widthOf(container) {
  return Math.max(240, Math.floor(container.getBoundingClientRect().width || 600));
}

/**
 * A last-hour sparkline of means, for a row of the patient list, its time axis the hour up to now (hidden, but fixed:
 * a trace that stopped half an hour ago ends half-way, not at the right edge as if it were current).
 */
export function sparkline(container, points, now = Date.now()) {
  if (points.length < 2) {
    container.telemetryChart?.destroy();
    container.telemetryChart = null;
    container.textContent = 'no data this hour';
    return null;
  }

  const data = [points.map(p => seconds(p.start)), points.map(p => p.mean)];
  return mount(container, {
    width: 140,
    height: 36,
    cursor: { show: false },
    legend: { show: false },
    select: { show: false },
    scales: { x: { time: true, range: () => [now / 1000 - 3600, now / 1000] } },
    axes: [{ show: false }, { show: false }],
    series: [{}, { stroke: colours.blue, width: 1.5, points: { show: false } }],
  }, data);
}

/**
 * A trend: the band from each window's minimum to its maximum, the mean as a line, alert thresholds as dashed
 * horizontal lines with their level written beside them, and when alerts were raised as marks on the time axis.
 */
export function trendChart(container, { points, resolution, unit, from, to, thresholds = [], markers = [] }) {
  const data = withGaps(points, resolution);
  const drawExtras = u => {
    for (const threshold of thresholds) dashedLevel(u, threshold.level, `${threshold.label} ${threshold.level} ${unit}`);
    const context = u.ctx;
    context.save();
    context.fillStyle = colours.vermillion;
    for (const marker of markers) {
      const x = u.valToPos(seconds(marker.time), 'x', true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      const bottom = u.bbox.top + u.bbox.height;
      context.beginPath();
      context.moveTo(x, bottom - 12 * devicePixelRatio);
      context.lineTo(x - 6 * devicePixelRatio, bottom);
      context.lineTo(x + 6 * devicePixelRatio, bottom);
      context.closePath();
      context.fill();
    }

    context.restore();
  };

  // The value axis always takes in the thresholds, so a line is drawn even when the values stay far from it.
  const levels = thresholds.map(t => t.level);
  return mount(container, {
    width: widthOf(container),
    height: 220,
    scales: {
      // The whole range asked for, so a quiet stretch shows as one and alerts near now stay on the axis.
      x: { time: true, range: () => [seconds(from), seconds(to)] },
      y: {
        range: (u, min, max) => {
          const low = Math.min(min ?? Infinity, ...levels);
          const high = Math.max(max ?? -Infinity, ...levels);
          const pad = (high - low) * 0.08 || 1;
          return [low - pad, high + pad];
        },
      },
    },
    axes: [{}, { label: unit, size: 60 }],
    series: [
      {},
      { label: 'min', stroke: colours.skyLine, width: 1, points: { show: false } },
      { label: 'max', stroke: colours.skyLine, width: 1, points: { show: false } },
      // Points where they are far enough apart to tell (uPlot's own rule), and at every lone value.
      { label: 'mean', stroke: colours.blue, width: 2, points: { filter: loneValues } },
    ],
    bands: [{ series: [2, 1], fill: 'rgba(86, 180, 233, 0.25)' }],
    hooks: { draw: [drawExtras] },
  }, data);
}

/** Bars per day (steps, hours of sleep), with a goal drawn as a dashed line when there is one. */
export function dayBars(container, { days, values, unit, goal, colour = colours.blue }) {
  const data = [days.map(middayOf), values];
  const drawGoal = u => {
    if (goal !== undefined) dashedLevel(u, goal, `goal ${goal.toLocaleString()} ${unit}`);
  };

  return mount(container, {
    width: widthOf(container),
    height: 200,
    legend: { show: false },
    scales: {
      x: { time: true, range: (u, min, max) => wholeDays(min, max) },
      y: { range: (u, min, max) => [0, Math.max(max ?? 0, goal ?? 0) * 1.1 || 1] },
    },
    axes: [{}, { label: unit, size: 60 }],
    series: [{}, { label: unit, fill: colour, stroke: colour, paths: uPlot.paths.bars({ size: [0.6, 40] }), points: { show: false } }],
    hooks: { draw: [drawGoal] },
  }, data);
}

/** A line per day (resting heart rate, weight), days without a value left as gaps, each day's value a point. */
export function dayLine(container, { days, values, unit, colour = colours.blue }) {
  const data = [days.map(middayOf), values];
  return mount(container, {
    width: widthOf(container),
    height: 200,
    legend: { show: false },
    scales: { x: { time: true, range: (u, min, max) => wholeDays(min, max) } },
    axes: [{}, { label: unit, size: 60 }],
    series: [{}, { label: unit, stroke: colour, width: 2, points: { show: true, size: 6 } }],
  }, data);
}

/**
 * A day's middle where the browser is: the days are the patient's own (the server counts them in the browser's time
 * zone), and the axis labels its ticks in local time, so a day at UTC noon would sit under the next day's tick east of
 * UTC+12.
 */
function middayOf(day) {
  return seconds(`${day}T12:00:00`);
}

/** The days' range with half a day either side, so the first and last bars (today's) are drawn whole. */
function wholeDays(min, max) {
  return min === null || max === null ? [min, max] : [min - 43200, max + 43200];
}

/** Destroys every chart drawn inside root, before root's contents are replaced. */
export function destroyCharts(root) {
  for (const node of root.querySelectorAll('*')) {
    node.telemetryChart?.destroy();
    node.telemetryChart = null;
  }
}
