/* Draw every [data-chart] element from the page's JSON block (#chart-data).
   A static file: the pages carry no inline script (CSP script-src 'self'). */
(function () {
  "use strict";

  var palette = ["#1a73e8", "#34a853", "#fbbc04", "#ea4335", "#9334e6", "#12b5cb", "#f06292", "#8d6e63"];

  function barOption(spec) {
    return {
      color: palette,
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      grid: { left: 8, right: 16, top: 24, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: spec.categories, axisLabel: { interval: 0, hideOverlap: true } },
      yAxis: { type: "value", minInterval: 1 },
      series: [{
        name: spec.title,
        type: "bar",
        data: spec.values,
        colorBy: "data",
        label: { show: true, position: "top" },
        barMaxWidth: 48
      }]
    };
  }

  var builders = { bar: barOption };

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
