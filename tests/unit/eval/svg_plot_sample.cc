// Writes a sample "Spearman per layer per method" chart to argv[1]. A ctest parses it as XML;
// developers render it (rsvg-convert -o plot.png plot.svg) to eyeball the layout.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <vector>

#include "engine/eval/svg_plot.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.svg\n", argv[0]);
    return 2;
  }
  claa::eval::LineChart chart;
  chart.title = "Spearman correlation with the Answer-Informed Oracle";
  chart.x_label = "layer";
  chart.y_label = "Spearman ρ";
  chart.y_min = -0.2;
  chart.y_max = 1.0;
  const int layers = 32;
  struct Shape { const char* name; double base, amp, phase, dip; };
  const Shape shapes[] = {{"CLAA (n=4, z-score, max)", 0.78, 0.06, 0.3, 0.0},
                          {"FastKV", 0.62, 0.18, 0.9, 0.35},
                          {"GemFilter", 0.45, 0.25, 1.7, 0.5},
                          {"SnapKV", 0.55, 0.15, 2.4, 0.2},
                          {"Oracle", 1.0, 0.0, 0.0, 0.0},
                          {"Full KV <ref> & co", -0.05, 0.1, 0.5, 0.0}};
  for (const Shape& s : shapes) {
    claa::eval::PlotSeries series;
    series.name = s.name;
    for (int l = 0; l < layers; ++l) {
      double v = s.base + s.amp * std::sin(l * 0.45 + s.phase);
      if (l == 20 || l == 21) v -= s.dip;  // The single-layer instability the paper shows.
      series.y.push_back(l < 2 && s.dip > 0 ? std::numeric_limits<double>::quiet_NaN() : v);
    }
    chart.series.push_back(std::move(series));
  }
  absl::StatusOr<std::string> svg = claa::eval::RenderLineChartSvg(chart);
  if (!svg.ok()) {
    std::fprintf(stderr, "%s\n", svg.status().ToString().c_str());
    return 1;
  }
  std::ofstream(argv[1]) << *svg;
  return 0;
}
