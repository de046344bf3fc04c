/* 分层: the tier sizes over time (stacked areas) and a run's from → to matrix (heatmap),
   from the page's JSON block (#chart-data); charts.js draws the other kinds.
   A heatmap cell opens its customers (spec.links, "x,y" -> URL). No inline script (CSP). */
(function () {
  "use strict";

  var palette = ["#1a73e8", "#34a853", "#fbbc04", "#ea4335", "#9334e6", "#12b5cb", "#f06292", "#8d6e63"];

  function stackOption(spec) {
    return {
      color: palette,
      tooltip: { trigger: "axis" },
      legend: { top: 0, type: "scroll" },
      grid: { left: 8, right: 16, top: 36, bottom: 8, containLabel: true },
      xAxis: { type: "category", boundaryGap: false, data: spec.categories },
      yAxis: { type: "value", minInterval: 1 },
      series: spec.series.map(function (s) {
        return { name: s.name, type: "line", stack: "tiers", areaStyle: {}, showSymbol: false, data: s.values };
      })
    };
  }

  function heatmapOption(spec) {
    var max = spec.cells.reduce(function (m, c) { return Math.max(m, c[2]); }, 1);
    return {
      tooltip: {
        position: "top",
        formatter: function (p) {
          return spec.y[p.data[1]] + " → " + spec.x[p.data[0]] + "：" + p.data[2] + " 人";
        }
      },
      grid: { left: 8, right: 16, top: 16, bottom: 36, containLabel: true },
      xAxis: { type: "category", data: spec.x, name: "之后", nameLocation: "middle", nameGap: 28, splitArea: { show: true } },
      yAxis: { type: "category", data: spec.y, name: "之前", nameLocation: "start", inverse: true, splitArea: { show: true } },
      visualMap: { show: false, min: 0, max: max, inRange: { color: ["#e8f0fe", "#1a73e8"] } },
      series: [{
        name: "分层流转", type: "heatmap", data: spec.cells, label: { show: true },
        emphasis: { itemStyle: { shadowBlur: 6, shadowColor: "rgba(0,0,0,.3)" } }, cursor: "pointer"
      }]
    };
  }

  var builders = { stack: stackOption, heatmap: heatmapOption };

  function draw() {
    var block = document.getElementById("chart-data");
    if (!block || !window.echarts) { return; }
    var specs = JSON.parse(block.textContent || "{}");
    var charts = [];
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var spec = specs[el.getAttribute("data-chart")];
      var build = spec && builders[spec.kind];
      if (!build) { return; }
      var chart = window.echarts.init(el, null, { locale: "ZH" });
      chart.setOption(build(spec));
      if (spec.links) {
        chart.on("click", function (p) {
          var url = p.data && spec.links[p.data[0] + "," + p.data[1]];
          if (url) { window.location.assign(url); }
        });
      }
      charts.push(chart);
    });
    window.addEventListener("resize", function () {
      charts.forEach(function (c) { c.resize(); });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
