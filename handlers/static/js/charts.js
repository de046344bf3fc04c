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

  // A line per series; spec.range keeps the last N days (the 近7天/近30天 buttons).
  function lineOption(spec) {
    var n = spec.range || spec.categories.length;
    return {
      color: palette,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 8, right: 16, top: 32, bottom: 8, containLabel: true },
      xAxis: { type: "category", boundaryGap: false, data: spec.categories.slice(-n) },
      yAxis: { type: "value", minInterval: 1 },
      series: spec.series.map(function (s) {
        return { name: s.name, type: "line", data: s.values.slice(-n), showSymbol: n <= 7 };
      })
    };
  }

  // Tier moves: spec.nodes (the "from" side already named apart), spec.links {source, target, value}.
  function sankeyOption(spec) {
    return {
      color: palette,
      animation: false,  // drawn whole at once: screenshots and first looks show the final flows
      tooltip: { trigger: "item" },
      series: [{
        type: "sankey",
        left: 8,
        right: 96,
        top: 8,
        bottom: 8,
        nodeAlign: "justify",
        layoutIterations: 0,  // keep the tiers in their configured order
        emphasis: { focus: "adjacency" },
        lineStyle: { color: "gradient", opacity: 0.4 },
        label: { formatter: "{b}" },
        data: spec.nodes.map(function (name) { return { name: name }; }),
        links: spec.links
      }]
    };
  }

  var builders = { bar: barOption, line: lineOption, sankey: sankeyOption };

  // Buttons [data-range-for=<chart key>][data-range=<days>] redraw that chart's range.
  function bindRanges(specs, byKey) {
    document.querySelectorAll("[data-range-for]").forEach(function (button) {
      button.addEventListener("click", function () {
        var key = button.getAttribute("data-range-for");
        var spec = specs[key];
        var chart = byKey[key];
        if (!spec || !chart) { return; }
        spec.range = parseInt(button.getAttribute("data-range"), 10);
        chart.setOption(builders[spec.kind](spec), { notMerge: true });
        document.querySelectorAll("[data-range-for='" + key + "']").forEach(function (b) {
          b.setAttribute("aria-pressed", b === button ? "true" : "false");
        });
      });
    });
  }

  function draw() {
    var block = document.getElementById("chart-data");
    if (!block || !window.echarts) { return; }
    var specs = JSON.parse(block.textContent || "{}");
    var charts = [];
    var byKey = {};
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var key = el.getAttribute("data-chart");
      var spec = specs[key];
      var build = spec && builders[spec.kind];
      if (!build) { return; }
      var chart = window.echarts.init(el, null, { locale: "ZH" });
      chart.setOption(build(spec));
      charts.push(chart);
      byKey[key] = chart;
    });
    bindRanges(specs, byKey);
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
