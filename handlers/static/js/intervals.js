/* Draw [data-chart] elements whose spec.kind is "interval": a point per category with its
   95 % interval as an error bar (a custom series), and a dashed line at spec.baseline (0 for an uplift; 1, break-even, for an ROI).
   A static file: the pages carry no inline script (CSP script-src 'self'). */
(function () {
  "use strict";

  function errorBar(params, api) {
    var low = api.value(1);
    var high = api.value(2);
    if (low === null || high === null || isNaN(low) || isNaN(high)) { return null; }
    var top = api.coord([api.value(0), high]);
    var bottom = api.coord([api.value(0), low]);
    var half = Math.min(api.size([1, 0])[0] * 0.15, 12);
    var style = { stroke: "#1a73e8", lineWidth: 2 };
    return {
      type: "group",
      children: [
        { type: "line", shape: { x1: top[0], y1: top[1], x2: bottom[0], y2: bottom[1] }, style: style },
        { type: "line", shape: { x1: top[0] - half, y1: top[1], x2: top[0] + half, y2: top[1] }, style: style },
        { type: "line", shape: { x1: bottom[0] - half, y1: bottom[1], x2: bottom[0] + half, y2: bottom[1] }, style: style }
      ]
    };
  }

  function intervalOption(spec) {
    var unit = spec.unit || "";
    var bars = spec.categories.map(function (_, i) { return [i, spec.low[i], spec.high[i]]; });
    return {
      tooltip: {
        trigger: "axis",
        formatter: function (items) {
          var i = items[0].dataIndex;
          var text = spec.categories[i] + "<br>" + spec.title + "：" + spec.values[i] + unit;
          if (spec.low[i] !== null && spec.high[i] !== null) {
            text += "<br>95% 区间：" + spec.low[i] + unit + " ~ " + spec.high[i] + unit;
          }
          return text;
        }
      },
      grid: { left: 8, right: 16, top: 36, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: spec.categories },
      yAxis: { type: "value", name: spec.title, axisLabel: { formatter: "{value}" + unit } },
      series: [
        {
          name: spec.title,
          type: "scatter",
          data: spec.values,
          symbolSize: 12,
          itemStyle: { color: "#1a73e8" },
          markLine: {
            silent: true, symbol: "none", lineStyle: { type: "dashed", color: "#999" },
            data: [{ yAxis: spec.baseline || 0 }], label: { show: false }
          }
        },
        {
          name: "95% 区间",
          type: "custom",
          renderItem: errorBar,
          encode: { x: 0, y: [1, 2] },
          data: bars,
          z: 1
        }
      ]
    };
  }

  function draw() {
    var block = document.getElementById("chart-data");
    if (!block || !window.echarts) { return; }
    var specs = JSON.parse(block.textContent || "{}");
    var charts = [];
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var spec = specs[el.getAttribute("data-chart")];
      if (!spec || spec.kind !== "interval") { return; }
      var chart = window.echarts.init(el, null, { locale: "ZH" });
      chart.setOption(intervalOption(spec));
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
