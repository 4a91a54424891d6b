/* The lead dashboard's charts (Chart.js, vendored in static/vendor/). Reads the figures from the
   JSON the page embeds with json_script (id "dashboard-data"); no inline script (CSP). Each
   <canvas data-chart="name"> gets the chart of that name. */
(function () {
  "use strict";

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  var PALETTE = ["#1f5f8b", "#b35c00", "#1b5e33", "#8c1d1d", "#6a4c93", "#2a9d8f", "#7a4a00"];

  function lineOrBar(type, labels, datasets, extra) {
    return {
      type: type,
      data: { labels: labels, datasets: datasets },
      options: Object.assign(
        {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
          plugins: { legend: { position: "bottom" } },
        },
        extra || {}
      ),
    };
  }

  // The days' axis: every label when they fit, else every n-th counted back from the last, so
  // today (the last day) always has its label; Chart.js's own skipping could drop it.
  function dayTicks(days) {
    var step = Math.max(1, Math.ceil(days.length / 12));
    return {
      autoSkip: false,
      maxRotation: 0,
      callback: function (value, index) {
        return (days.length - 1 - index) % step === 0 ? days[index] : "";
      },
    };
  }

  function configs(data) {
    var days = data.dayLabels || data.days;
    var accent = cssVar("--accent", PALETTE[0]);
    var ticks = dayTicks(days);
    var medianLabel = data.medianUnit === "s" ? "Median seconds" : "Median minutes";
    return {
      perDayByKind: lineOrBar(
        "bar",
        days,
        data.perDayByKind.map(function (series, i) {
          return { label: series.label, data: series.data, backgroundColor: PALETTE[i % PALETTE.length] };
        }),
        { scales: { x: { stacked: true, ticks: ticks },
                    y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }
      ),
      outcomes: {
        type: "doughnut",
        data: {
          labels: data.outcomes.labels,
          datasets: [{ data: data.outcomes.data, backgroundColor: PALETTE }],
        },
        options: { responsive: true, maintainAspectRatio: false, animation: false,
                   plugins: { legend: { position: "bottom" } } },
      },
      perAgent: lineOrBar(
        "bar",
        data.perAgent.labels,
        [{ label: "Actions", data: data.perAgent.data, backgroundColor: accent }],
        { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
          plugins: { legend: { display: false } } }
      ),
      privilegedPerDay: lineOrBar(
        "bar",
        days,
        [{ label: "Actions on privileged targets", data: data.privilegedPerDay,
           backgroundColor: cssVar("--warn-text", PALETTE[1]) }],
        { scales: { x: { ticks: ticks }, y: { beginAtZero: true, ticks: { precision: 0 } } },
          plugins: { legend: { display: false } } }
      ),
      medianMinutesPerDay: lineOrBar(
        "line",
        days,
        [{ label: medianLabel, data: data.medianPerDay || data.medianMinutesPerDay,
           borderColor: accent, backgroundColor: accent, spanGaps: true }],
        { scales: { x: { ticks: ticks }, y: { beginAtZero: true } },
          plugins: { legend: { display: false } } }
      ),
    };
  }

  function draw() {
    var source = document.getElementById("dashboard-data");
    if (!source || typeof window.Chart === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    var all = configs(data);
    window.Chart.defaults.color = cssVar("--text", "#1d2125");
    window.Chart.defaults.borderColor = cssVar("--border", "#d4d8dc");
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var config = all[canvas.dataset.chart];
      if (config) {
        new window.Chart(canvas, config);
        canvas.dataset.drawn = "true";
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
