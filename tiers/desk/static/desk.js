/* The desk's charts (tiers/desk/overview.py): the network's twelve-month trend, drawn by
   Chart.js (chart.umd.min.js, shipped beside this file). The data is JSON in the data-trend
   attribute of #trend-charts: {"labels": [months], "series": [{"key", "label", "percent",
   "values"}]}; a rate is a fraction (shown as a percentage), null where a month has no
   denominator (a gap, not 0). No inline script or style: the desk's CSP is default-src 'self'. */
(function () {
  "use strict";
  var box = document.getElementById("trend-charts");
  if (!box || typeof Chart === "undefined") {
    return;
  }
  var data = JSON.parse(box.getAttribute("data-trend") || "{}");
  var series = {};
  (data.series || []).forEach(function (one) {
    series[one.key] = one;
  });
  var ink = "#1f4e79";
  var charts = [];

  function percent(value) {
    return value === null || value === undefined ? null : Math.round(value * 1000) / 10;
  }

  function draw(canvas, one) {
    var values = one.percent ? one.values.map(percent) : one.values;
    var suffix = one.percent ? "%" : "";
    var y = {beginAtZero: true, ticks: {precision: 0}};
    if (one.percent) {
      y = {min: 0, max: 100, ticks: {callback: function (value) { return value + "%"; }}};
    }
    return new Chart(canvas, {
      type: one.percent ? "line" : "bar",
      data: {
        labels: data.labels,
        datasets: [{
          label: one.label,
          data: values,
          borderColor: ink,
          backgroundColor: one.percent ? ink : "rgba(31, 78, 121, 0.75)",
          spanGaps: false,
          clip: false,
          pointRadius: 3
        }]
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        layout: {padding: {top: 4, right: 6}},
        scales: {y: y},
        plugins: {
          legend: {display: false},
          tooltip: {
            callbacks: {
              label: function (item) {
                return one.label + ": " + item.formattedValue + suffix;
              }
            }
          }
        }
      }
    });
  }

  box.querySelectorAll("canvas[data-series]").forEach(function (canvas) {
    var one = series[canvas.getAttribute("data-series")];
    if (one) {
      charts.push(draw(canvas, one));
    }
  });

  // Printing lays the page out anew (A4): redraw each chart at its printed size.
  function fit() {
    charts.forEach(function (chart) { chart.resize(); });
  }
  window.addEventListener("beforeprint", fit);
  window.addEventListener("afterprint", fit);
  if (window.matchMedia) {
    window.matchMedia("print").addEventListener("change", fit);
  }
})();
