// Charts drawn with uPlot (installed from npm by the build). Colours are the Okabe-Ito palette, which readers with
// any common colour-vision deficiency can tell apart; nothing is told by colour alone.

import uPlot from '/lib/uPlot.esm.js';

export const colours = {
  blue: '#0072B2',
  orange: '#E69F00',
  sky: '#56B4E9',
  green: '#009E73',
  vermillion: '#D55E00',
  purple: '#CC79A7',
  grey: '#6b6b6b',
};

const seconds = time => new Date(time).getTime() / 1000;

/** A dashed horizontal line at a level of the value axis, labelled at its left end (an alert threshold, a goal). */
function dashedLevel(u, level, label) {
  const y = u.valToPos(level, 'y', true);
  if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
  const context = u.ctx;
  context.save();
  context.strokeStyle = colours.vermillion;
  context.fillStyle = colours.vermillion;
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

/** A last-hour sparkline of means, for a row of the patient list. */
export function sparkline(container, points) {
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
    scales: { x: { time: true } },
    axes: [{ show: false }, { show: false }],
    series: [{}, { stroke: colours.blue, width: 1.5, points: { show: false } }],
  }, data);
}

/**
 * A trend: the band from each window's minimum to its maximum, the mean as a line, alert thresholds as dashed
 * horizontal lines with their level written beside them, and when alerts were raised as marks on the time axis.
 */
export function trendChart(container, { points, unit, from, to, thresholds = [], markers = [] }) {
  const data = [
    points.map(p => seconds(p.start)),
    points.map(p => p.min),
    points.map(p => p.max),
    points.map(p => p.mean),
  ];
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
      { label: 'min', stroke: colours.sky, width: 1, points: { show: false } },
      { label: 'max', stroke: colours.sky, width: 1, points: { show: false } },
      { label: 'mean', stroke: colours.blue, width: 2, points: { show: false } },
    ],
    bands: [{ series: [2, 1], fill: 'rgba(86, 180, 233, 0.25)' }],
    hooks: { draw: [drawExtras] },
  }, data);
}

/** Bars per day (steps, hours of sleep), with a goal drawn as a dashed line when there is one. */
export function dayBars(container, { days, values, unit, goal, colour = colours.blue }) {
  const data = [days.map(day => seconds(`${day}T12:00:00Z`)), values];
  const drawGoal = u => {
    if (goal !== undefined) dashedLevel(u, goal, `goal ${goal.toLocaleString()} ${unit}`);
  };

  return mount(container, {
    width: widthOf(container),
    height: 200,
    legend: { show: false },
    scales: {
      x: { time: true },
      y: { range: (u, min, max) => [0, Math.max(max ?? 0, goal ?? 0) * 1.1 || 1] },
    },
    axes: [{}, { label: unit, size: 60 }],
    series: [{}, { label: unit, fill: colour, stroke: colour, paths: uPlot.paths.bars({ size: [0.6, 40] }), points: { show: false } }],
    hooks: { draw: [drawGoal] },
  }, data);
}

/** A line per day (resting heart rate, weight), days without a value left as gaps. */
export function dayLine(container, { days, values, unit, colour = colours.blue }) {
  const data = [days.map(day => seconds(`${day}T12:00:00Z`)), values];
  return mount(container, {
    width: widthOf(container),
    height: 200,
    legend: { show: false },
    scales: { x: { time: true } },
    axes: [{}, { label: unit, size: 60 }],
    series: [{}, { label: unit, stroke: colour, width: 2, spanGaps: true, points: { show: true, size: 6 } }],
  }, data);
}

/** Destroys every chart drawn inside root, before root's contents are replaced. */
export function destroyCharts(root) {
  for (const node of root.querySelectorAll('*')) {
    node.telemetryChart?.destroy();
    node.telemetryChart = null;
  }
}
